"""Megatron flag passthrough: the declared Megatron flags parse with Megatron's names and defaults."""

from __future__ import annotations

import pytest

from slime.megatron import build_parser, parse_megatron_args
from slime.megatron.megatron_args import declared_dests

# scripts/models/qwen3-4B.sh as the seeds list it, plus parallelism, recompute and optimizer flags.
QWEN3_4B = (
    "--num-layers 36 --hidden-size 2560 --ffn-hidden-size 9728 --swiglu --vocab-size 151936 --disable-bias-linear "
    "--num-attention-heads 32 --group-query-attention --num-query-groups 8 --kv-channels 128 --qk-layernorm "
    "--normalization RMSNorm --norm-epsilon 1e-6 --use-rotary-position-embeddings --rotary-base 1000000"
).split()
PERF = (
    "--tensor-model-parallel-size 2 --sequence-parallel --pipeline-model-parallel-size 1 --context-parallel-size 1 "
    "--expert-model-parallel-size 1 --expert-tensor-parallel-size 1 --recompute-granularity full "
    "--recompute-method uniform --recompute-num-layers 1"
).split()
OPTIM = (
    "--optimizer adam --lr 1e-6 --lr-decay-style constant --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.98".split()
)


def test_seed_script_flags_are_megatron_flags() -> None:
    ns, rest = parse_megatron_args([*QWEN3_4B, *PERF, *OPTIM, "--rollout-batch-size", "32", "--colocate"])
    assert rest == ["--rollout-batch-size", "32", "--colocate"]  # slime's flags are left for the caller
    assert (ns.num_layers, ns.hidden_size, ns.ffn_hidden_size, ns.kv_channels) == (36, 2560, 9728, 128)
    assert ns.swiglu and ns.qk_layernorm and ns.group_query_attention and not ns.add_bias_linear
    assert (ns.num_query_groups, ns.norm_epsilon, ns.rotary_base) == (8, 1e-6, 1000000)
    assert (ns.tensor_model_parallel_size, ns.sequence_parallel) == (2, True)
    assert (ns.recompute_granularity, ns.recompute_method, ns.recompute_num_layers) == ("full", "uniform", 1)
    assert (ns.lr, ns.lr_decay_style, ns.weight_decay, ns.adam_beta2) == (1e-6, "constant", 0.1, 0.98)


def test_defaults_are_megatrons_with_slimes_overrides_and_forced_values() -> None:
    ns, rest = parse_megatron_args([])
    assert rest == []
    assert ns.explicit == frozenset()
    assert (ns.tensor_model_parallel_size, ns.pipeline_model_parallel_size, ns.context_parallel_size) == (1, 1, 1)
    assert (ns.seed, ns.clip_grad, ns.make_vocab_size_divisible_by, ns.ckpt_format) == (1234, 1.0, 128, "torch_dist")
    assert (ns.norm_epsilon, ns.rotary_base, ns.attention_dropout, ns.adam_beta2) == (1e-5, 10000, 0.1, 0.999)
    assert ns.lr == 1e-6 and ns.distributed_timeout_minutes == 10  # slime's re-defaults
    assert ns.use_distributed_optimizer and ns.bf16 and ns.variable_seq_lengths  # slime forces these
    assert not parse_megatron_args(["--fp16"])[0].bf16


def test_explicit_records_only_given_flags() -> None:
    ns, _ = parse_megatron_args(["--rotary-base", "10000", "--disable-bias-linear", "--lr", "2e-6"])
    assert ns.explicit == {"rotary_base", "add_bias_linear", "lr"}


def test_parser_is_composable_and_refuses_abbreviations() -> None:
    parser = build_parser()
    assert not parser.add_help
    _, rest = parse_megatron_args(["--tensor-model-parallel", "2"])  # a prefix is not a flag
    assert rest == ["--tensor-model-parallel", "2"]
    assert {"num_layers", "tensor_model_parallel_size", "add_bias_linear", "ckpt_step"} <= declared_dests()


def test_bad_choice_is_an_error() -> None:
    with pytest.raises(SystemExit):
        parse_megatron_args(["--recompute-granularity", "everything"])


def test_fusion_switches_reach_the_transformer_config_on_accelerators_with_te_only(monkeypatch) -> None:
    from slime.megatron import training_configs
    from slime.megatron.training_configs import transformer_overrides

    ns, _ = parse_megatron_args(["--swiglu"])
    assert ns.bias_swiglu_fusion and ns.bias_dropout_fusion and ns.gradient_accumulation_fusion  # Megatron's defaults
    monkeypatch.setattr(training_configs, "transformer_engine_available", lambda: False)
    local = transformer_overrides(ns, on_cpu=False)  # the local spec: measured faster eager (host-bound)
    assert not (local["bias_activation_fusion"] or local["bias_dropout_fusion"])
    monkeypatch.setattr(training_configs, "transformer_engine_available", lambda: True)
    gpu = transformer_overrides(ns, on_cpu=False)
    assert gpu["bias_activation_fusion"] and gpu["bias_dropout_fusion"]  # torch.compile'd SwiGLU, bias-dropout-add
    assert not (gpu["masked_softmax_fusion"] or gpu["apply_rope_fusion"] or gpu["gradient_accumulation_fusion"])
    cpu = transformer_overrides(ns, on_cpu=True)
    assert not (cpu["bias_activation_fusion"] or cpu["bias_dropout_fusion"])  # the CPU stays eager
    off, _ = parse_megatron_args(["--swiglu", "--no-bias-swiglu-fusion", "--no-bias-dropout-fusion"])
    assert off.explicit == {"swiglu", "bias_swiglu_fusion", "bias_dropout_fusion"}
    unfused = transformer_overrides(off, on_cpu=False)
    assert not (unfused["bias_activation_fusion"] or unfused["bias_dropout_fusion"])
    gelu, _ = parse_megatron_args([])  # not SwiGLU: Megatron's GELU fusion is not wired, the activation stays unfused
    assert not transformer_overrides(gelu, on_cpu=False)["bias_activation_fusion"]
    for flag in ("--no-masked-softmax-fusion", "--no-gradient-accumulation-fusion", "--no-rope-fusion",
                 "--no-bias-gelu-fusion"):  # fmt: skip
        assert parse_megatron_args([flag])[1] == []  # accepted (slime scripts may carry them), always satisfied
