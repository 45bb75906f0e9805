"""The seeds' launch-script flag sets (run-qwen3-4B.sh style, GPU counts kept) parse, validate and resolve."""

from __future__ import annotations

import pytest

from slime.train.compose import compose_run
from slime.train.driver import parse_job_args
from slime.train.resolve import Environment
from slime.train.run_config import LoopConfig, MegatronTrainerConfig, WeightSyncConfig
from slime.types import ConfigError

MODEL_ARGS = ["--swiglu", "--num-layers", "36", "--hidden-size", "2560", "--ffn-hidden-size", "9728",
              "--num-attention-heads", "32", "--group-query-attention", "--num-query-groups", "8",
              "--use-rotary-position-embeddings", "--disable-bias-linear", "--normalization", "RMSNorm",
              "--norm-epsilon", "1e-6", "--rotary-base", "1000000", "--vocab-size", "151936", "--kv-channels", "128",
              "--qk-layernorm"]  # fmt: skip
SEED_ARGS = [
    "--hf-checkpoint", "/root/Qwen3-4B", "--ref-load", "/root/Qwen3-4B_torch_dist", "--load", "/root/Qwen3-4B_slime/",
    "--save", "/root/Qwen3-4B_slime/", "--save-interval", "20",
    "--prompt-data", "/root/dapo-math-17k/dapo-math-17k.jsonl", "--input-key", "prompt", "--label-key", "label",
    "--apply-chat-template", "--rollout-shuffle", "--rm-type", "deepscaler", "--num-rollout", "3000",
    "--rollout-batch-size", "32", "--n-samples-per-prompt", "8", "--rollout-max-response-len", "8192",
    "--rollout-temperature", "0.8", "--global-batch-size", "256", "--balance-data",
    "--eval-interval", "20", "--eval-prompt-data", "aime", "/root/aime-2024/aime-2024.jsonl",
    "--n-samples-per-eval-prompt", "16", "--eval-max-response-len", "16384", "--eval-top-p", "0.7",
    "--tensor-model-parallel-size", "2", "--sequence-parallel", "--pipeline-model-parallel-size", "1",
    "--context-parallel-size", "1", "--expert-model-parallel-size", "1", "--expert-tensor-parallel-size", "1",
    "--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1",
    "--use-dynamic-batch-size", "--max-tokens-per-gpu", "9216",
    "--advantage-estimator", "grpo", "--use-kl-loss", "--kl-loss-coef", "0.00", "--kl-loss-type", "low_var_kl",
    "--entropy-coef", "0.00", "--eps-clip", "0.2", "--eps-clip-high", "0.28",
    "--optimizer", "adam", "--lr", "1e-6", "--lr-decay-style", "constant", "--weight-decay", "0.1",
    "--adam-beta1", "0.9", "--adam-beta2", "0.98",
    "--rollout-num-gpus-per-engine", "2", "--sglang-mem-fraction-static", "0.7",
    "--actor-num-nodes", "1", "--actor-num-gpus-per-node", "8", "--colocate",
]  # fmt: skip
GPU = Environment(num_gpus=8, has_megatron=True, has_sglang=True)


def test_run_qwen3_4b_flags_parse_and_resolve():
    args, parsed = parse_job_args([*MODEL_ARGS, *SEED_ARGS], async_loop=False, env=GPU)
    assert args.train_backend == "megatron" and args.rollout_engine == "sglang"
    assert args.global_batch_size == 256 and args.num_steps_per_rollout == 1 and args.eps_clip_high == 0.28
    assert "--tensor-model-parallel-size" in parsed.megatron_argv and "--num-layers" in parsed.megatron_argv
    assert parsed.sglang_argv == ("--sglang-mem-fraction-static", "0.7")
    assert args.offload_train and args.offload_rollout and args.rollout_num_gpus == 8


def test_search_r1_spelling_of_the_input_key():
    args, _ = parse_job_args(["--prompt-key", "question", "--rollout-batch-size", "4", "--num-rollout", "1",
                              "--hf-checkpoint", "m"], async_loop=False, env=GPU)  # fmt: skip
    assert args.input_key == "question"


def test_run_qwen3_4b_composes_one_run_config():
    """The seed script's flags become each layer's typed config; Megatron gets slime's shared flags' values."""
    args, _ = parse_job_args([*MODEL_ARGS, *SEED_ARGS], async_loop=False, env=GPU)
    config = compose_run(args)
    assert isinstance(config.trainer, MegatronTrainerConfig) and config.train_backend == "megatron"
    megatron = config.trainer.megatron_args
    assert megatron.tensor_model_parallel_size == 2 and megatron.num_layers == 36
    assert megatron.lr == 1e-6 and megatron.weight_decay == 0.1 and megatron.adam_beta2 == 0.98
    assert megatron.global_batch_size == 256 and megatron.seed == args.seed
    assert {"lr", "weight_decay", "tensor_model_parallel_size"} <= megatron.explicit
    actor = config.trainer.actor
    assert actor.use_dynamic_batch_size and actor.max_tokens_per_gpu == 9216
    assert config.loss is config.trainer.loss and config.loss.use_kl_loss and config.loss.kl_loss_type == "low_var_kl"
    assert config.loss.eps_clip_high == 0.28
    assert config.engines.num_engines == 4 and config.engines.engine.backend == "sglang"
    # colocated engines release their memory for the trainer: SGLang's memory saver is switched on for them
    assert config.engines.engine.server_args == ("--mem-fraction-static", "0.7", "--enable-memory-saver")
    assert config.engines.engine.base_gpu_id == 0  # colocated: the engines share the actor's GPUs from 0
    assert config.loop.offload_rollout and config.loop.offload_train and config.loop.num_rollout == 3000
    assert config.weight_sync.transport == "nccl" and config.cpu_threads == 0


def test_layer_configs_check_themselves():
    # The typed configs check themselves when built by hand (tests, custom entry scripts), naming the flag.
    with pytest.raises(ConfigError, match="disk_dir is None with transport disk; set --update-weight-disk-dir"):
        WeightSyncConfig(transport="disk")
    with pytest.raises(ConfigError, match="LoopConfig.save_interval is 0; set --save-interval to >= 1"):
        LoopConfig(save_interval=0)


def test_disaggregated_engines_start_after_the_actors_gpus():
    flags = [f for f in SEED_ARGS if f != "--colocate"]
    flags[flags.index("--actor-num-gpus-per-node") + 1] = "4"
    args, _ = parse_job_args([*MODEL_ARGS, *flags, "--rollout-num-gpus", "4"], async_loop=False, env=GPU)
    engine = compose_run(args).engines.engine
    assert engine.base_gpu_id == 4 and engine.num_gpus_per_engine == 2
    assert "--enable-memory-saver" not in engine.server_args  # disaggregated engines keep their memory
    # they join the trainer's NCCL weight group: SGLang's own NCCL_CUMEM_ENABLE=0 would break its first broadcast
    assert ("NCCL_CUMEM_ENABLE", "1") in engine.env


def test_engines_get_nccl_cumem_only_for_an_nccl_weight_group(monkeypatch):
    monkeypatch.delenv("NCCL_CUMEM_ENABLE", raising=False)
    colocated, _ = parse_job_args([*MODEL_ARGS, *SEED_ARGS], async_loop=False, env=GPU)
    assert "NCCL_CUMEM_ENABLE" not in dict(compose_run(colocated).engines.engine.env)  # CUDA IPC, no NCCL group
    flags = [f for f in SEED_ARGS if f != "--colocate"]
    disk = ["--update-weight-transport", "disk", "--update-weight-disk-dir", "/shared/w"]
    args, _ = parse_job_args([*MODEL_ARGS, *flags, "--rollout-num-gpus", "4", *disk], async_loop=False, env=GPU)
    assert "NCCL_CUMEM_ENABLE" not in dict(compose_run(args).engines.engine.env)  # weights by disk
    monkeypatch.setenv("NCCL_CUMEM_ENABLE", "0")  # the user's value reaches trainer and engines alike: kept
    args, _ = parse_job_args([*MODEL_ARGS, *flags, "--rollout-num-gpus", "4"], async_loop=False, env=GPU)
    assert "NCCL_CUMEM_ENABLE" not in dict(compose_run(args).engines.engine.env)


def test_colocated_sglang_engines_need_torch_memory_saver(monkeypatch):
    """Where SGLang is installed but torch_memory_saver is not, the flag slime adds would crash every engine at
    start: preflight stops the job first, naming the package and the way out."""
    import importlib.util

    from slime.train import preflight

    args, _ = parse_job_args([*MODEL_ARGS, *SEED_ARGS], async_loop=False, env=GPU)
    engines = compose_run(args).engines
    real = importlib.util.find_spec
    present = {"sglang": True, "torch_memory_saver": False}

    def find_spec(name, *a, **k):
        if name in present:
            return real("json") if present[name] else None  # any real spec stands for "installed"
        return real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr("slime.sglang.server_args.known_server_flags", lambda backend: None)
    with pytest.raises(ConfigError, match="torch_memory_saver is not installed .* --no-offload-rollout"):
        preflight.check_engine_flags(engines)
    present["torch_memory_saver"] = True
    preflight.check_engine_flags(engines)  # installed: nothing to say
