"""Compose the layers' typed configs from slime's flat `args`: the one place flags meet configs.

`compose_run` builds the job's `RunConfig` once, before anything starts (so a layer's own validation stops a bad
job early): the loss, the trainer (FSDP, or Megatron's namespace + `ActorConfig`), the engine group, the weight
sync and the loop settings. A layer config's field names are slime's flag names, so most fields copy straight
across; the few translations (store_false flags, list-valued flags, the flags slime and Megatron share) are
written out here. Configs validate themselves; nothing here checks values.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, TypeVar

from slime.train.run_config import LoopConfig, MegatronTrainerConfig, RunConfig, WeightSyncConfig

C = TypeVar("C")


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """Build `cls` from the attributes of `args` named like its fields; `overrides` win."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    values = {name: getattr(args, name) for name in names if hasattr(args, name) and name not in overrides}
    return cls(**values, **overrides)


def loss_config(args: argparse.Namespace) -> Any:
    """`slime.loss.LossConfig` from slime's algorithm flags."""
    from slime.loss import LossConfig

    return config_from_args(
        LossConfig,
        args,
        disable_grpo_std_normalization=not args.grpo_std_normalization,
        disable_rewards_normalization=not args.rewards_normalization,
    )


def fsdp_config(args: argparse.Namespace) -> Any:
    """`slime.fsdp.FSDPConfig` (with its nested LossConfig)."""
    from slime.fsdp import FSDPConfig

    targets = ",".join(args.target_modules) if args.target_modules else "all-linear"
    return config_from_args(
        FSDPConfig,
        args,
        loss=loss_config(args),
        target_modules=targets,
        global_batch_size=None if args.num_steps_per_rollout else args.global_batch_size,
    )


def megatron_namespace(args: argparse.Namespace) -> argparse.Namespace:
    """Megatron's own namespace: its pass-through flags, plus the flags slime parses itself but Megatron also
    reads (`--lr`, `--load`, `--save`, `--seed`, batch sizes, ...) with slime's resolved values."""
    from slime.megatron import parse_megatron_args
    from slime.megatron.megatron_args import declared_dests

    namespace, rest = parse_megatron_args(list(args.megatron_passthrough))
    if rest:  # arguments.parse_args routed only Megatron's flags here; a leftover is a bug, not user input
        raise AssertionError(f"Megatron's parser left {rest} unparsed")
    shared = declared_dests() & vars(args).keys()
    for name in shared:
        setattr(namespace, name, getattr(args, name))
    namespace.explicit = namespace.explicit | (shared & args.explicit_flags)
    return namespace


def megatron_trainer_config(args: argparse.Namespace) -> MegatronTrainerConfig:
    """Megatron's namespace, `ActorConfig` and the loss for `slime.megatron.MegatronPolicy`."""
    from slime.megatron import ActorConfig

    return MegatronTrainerConfig(
        megatron_args=megatron_namespace(args), actor=config_from_args(ActorConfig, args), loss=loss_config(args)
    )


def engine_group_config(args: argparse.Namespace) -> Any:
    """The `EngineGroupConfig` of the run (engines, pass-through flags, router); validates, starts nothing."""
    from slime.sglang.engine_group import EngineGroupConfig
    from slime.sglang.engine_process import NCCL_CUMEM_ENV
    from slime.sglang.router import RouterConfig
    from slime.sglang.server_args import EngineConfig, split_sglang_args

    _, engine_flags = split_sglang_args(args.sglang_passthrough)
    if args.rollout_engine != "local" and args.offload_rollout and "--enable-memory-saver" not in engine_flags:
        # slime's rule: engines that release their memory for the trainer run SGLang's torch_memory_saver allocator;
        # without it /release_memory_occupation keeps every byte (weights and KV cache) on the GPU.
        engine_flags = [*engine_flags, "--enable-memory-saver"]
    router_flags = [
        t.replace("--router-", "--", 1) if t.startswith("--router-") else t
        for t in args.sglang_passthrough
        if t not in engine_flags and not t.startswith("--sglang-")
    ]
    if args.rollout_num_engines is not None:
        num_engines = args.rollout_num_engines
    elif args.rollout_engine == "local":
        num_engines = 1
    else:
        num_engines = max(1, (args.rollout_num_gpus or 0) // args.rollout_num_gpus_per_engine)
    env: tuple[tuple[str, str], ...] = ()
    if args.rollout_engine == "local" and "OMP_NUM_THREADS" not in os.environ:
        env = (("OMP_NUM_THREADS", str(cpu_threads_per_process(args))),)
    nccl_group = not args.colocate and args.update_weight_transport == "nccl"
    if args.rollout_engine != "local" and nccl_group and NCCL_CUMEM_ENV[0] not in os.environ:
        env = (*env, NCCL_CUMEM_ENV)  # the trainer's NCCL mode, not SGLang's (see NCCL_CUMEM_ENV)
    # Disaggregated on one node: the engines take the GPUs after the actor's (slime's bundle order); colocated they
    # start at GPU 0 with the trainer. Across nodes the engines' node is Ray's choice, so they start at 0 there.
    after_actor = not (args.colocate or args.debug_rollout_only) and args.actor_num_nodes == 1
    engine = EngineConfig(
        model_path=args.hf_checkpoint,
        backend="local" if args.rollout_engine == "local" else "sglang",
        num_gpus_per_engine=args.rollout_num_gpus_per_engine,
        server_args=tuple(engine_flags),
        env=env,
        base_gpu_id=args.actor_num_gpus_per_node if after_actor else 0,
    )
    router = RouterConfig(
        ip=args.sglang_router_ip,
        port=args.sglang_router_port,
        request_timeout_secs=args.sglang_router_request_timeout_secs,
        extra_args=tuple(router_flags),
    )
    return EngineGroupConfig(
        engine=engine, num_engines=num_engines, router=router, server_concurrency=args.sglang_server_concurrency
    )


def cpu_threads_per_process(args: argparse.Namespace) -> int:
    """Threads each CPU process should use: the cores split between the trainer and the local engines.

    Oversubscribing a small machine is ruinous for torch on CPU (idle OpenMP workers spin): on 2 cores a
    train step of the demo took 5 s with default threads and 0.25 s with one thread per process.
    """
    num_engines = args.rollout_num_engines or 1
    return max(1, (os.cpu_count() or 1) // (num_engines + 1))


def _fp8_plan(args: argparse.Namespace) -> Any:
    """The FP8 rollout plan of the engines' `--hf-checkpoint` (None when it is not block-FP8)."""
    from slime.sync.fp8_rollout import Fp8QuantPlan

    return Fp8QuantPlan.from_hf_folder(args.hf_checkpoint) if args.hf_checkpoint else None


def compose_run(args: argparse.Namespace) -> RunConfig:
    """The job's `RunConfig` from resolved `args` (with `sglang_passthrough` / `megatron_passthrough` set)."""
    needs_engines = not args.debug_train_only and not args.rollout_external
    trainer = megatron_trainer_config(args) if args.train_backend == "megatron" else fsdp_config(args)
    engines = engine_group_config(args) if needs_engines else None
    return RunConfig(
        args=args,
        train_backend=args.train_backend,
        loop=config_from_args(LoopConfig, args, num_epoch=args.num_epoch or 1),
        loss=trainer.loss,
        trainer=trainer,
        engines=engines,
        weight_sync=WeightSyncConfig(
            transport=args.update_weight_transport,
            bucket_bytes=args.update_weight_buffer_size,
            disk_dir=args.update_weight_disk_dir,
            keep_files=args.update_weight_disk_keep_files,
            engine_backend=engines.engine.backend if engines else "local",
            engine_tp_size=engines.engine.tp_size if engines else 1,
            num_engines=engines.num_engines if engines else 1,
            colocate=args.colocate,
            fp8=_fp8_plan(args) if engines else None,
        ),
        cpu_threads=cpu_threads_per_process(args) if args.rollout_engine == "local" else 0,
    )
