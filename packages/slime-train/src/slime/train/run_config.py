"""`RunConfig`: every layer's typed config of one job, plus the loop's and the weight sync's own settings.

A `RunConfig` is built once, by `compose.compose_run`, from slime's resolved flags; the hosts and the loops read
their part of it and nothing else reads flags. It keeps slime's flat namespace as `args` because slime's plugin
contract hands `args` to custom rollout / reward / loss functions. The dataclasses here only hold and check
values (never change them); composing them from flags lives in `compose.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Literal

from slime.types import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LoopConfig:
    """What the sync / async loops sequence (slime's flag names)."""

    num_rollout: int | None = None
    """Rollouts to run; None = `num_epoch` passes over the prompt data (known once the data is loaded)."""
    num_epoch: int = 1
    start_rollout_id: int | None = None
    """Start here instead of 0 / the resumed rollout + 1."""
    save: str | None = None
    """Checkpoint folder (trainer checkpoint + run state); None = no checkpoints."""
    save_interval: int | None = None
    """Save every N rollouts (and always after the last one) when `save` is set."""
    save_hf: str | None = None
    """HF export path template (`{rollout_id}`) written with every save."""
    load: str | None = None
    """Resume folder: its run state and trainer checkpoint."""
    eval_interval: int | None = None
    skip_eval_before_train: bool = False
    update_weights_interval: int = 1
    """Async loop: push weights every N rollouts (the staleness bound in policy versions)."""
    offload_rollout: bool = False
    """Engines release memory while the trainer runs (colocate)."""
    offload_train: bool = False
    """The trainer offloads while the engines generate (colocate)."""
    use_fault_tolerance: bool = False
    async_loop: bool = False
    debug_rollout_only: bool = False
    debug_train_only: bool = False
    no_ray: bool = False
    """Run the hosts in this process (tests, debugging) instead of Ray actors."""

    def __post_init__(self) -> None:
        for name in ("num_rollout", "save_interval", "eval_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"LoopConfig.{name} is {value}; set --{name.replace('_', '-')} to >= 1 or drop it.")
        if self.num_epoch < 1:
            raise ConfigError(f"LoopConfig.num_epoch is {self.num_epoch}; set --num-epoch to >= 1.")
        if self.update_weights_interval < 1:
            raise ConfigError(
                f"LoopConfig.update_weights_interval is {self.update_weights_interval}; "
                "set --update-weights-interval to >= 1."
            )
        if self.start_rollout_id is not None and self.start_rollout_id < 0:
            raise ConfigError(f"LoopConfig.start_rollout_id is {self.start_rollout_id}; use >= 0.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class WeightSyncConfig:
    """How the trainer's rank 0 publishes weights to the engines (slime.sync transports)."""

    transport: Literal["nccl", "disk"] = "nccl"
    """slime's names. nccl: tensors to the engines (shared memory / CUDA IPC to engines on this host);
    disk: safetensors files in `disk_dir` + the path the engines load."""
    bucket_bytes: int = 512 * 1024**2
    """`--update-weight-buffer-size`: bytes materialised per bucket."""
    disk_dir: str | None = None
    keep_files: bool = False
    """Keep every published version on disk (default: only the newest)."""
    engine_backend: Literal["local", "sglang"] = "local"
    """Who receives: our local server (slime.sync's own wire format) or stock SGLang (its native bodies)."""
    engine_tp_size: int = 1
    num_engines: int = 1
    colocate: bool = False
    """Engines share the trainer's GPUs: tensors go by CUDA IPC; otherwise SGLang engines join a broadcast group."""
    fp8: Any = None
    """`slime.sync.fp8_rollout.Fp8QuantPlan` when the engines serve a block-FP8 `--hf-checkpoint` (FP8 rollout):
    the trainer's bf16 weights are quantized on the fly during every push."""

    def __post_init__(self) -> None:
        if self.transport not in ("nccl", "disk"):
            raise ConfigError(
                f"WeightSyncConfig.transport is {self.transport!r}; use --update-weight-transport nccl or disk."
            )
        if self.transport == "disk" and not self.disk_dir:
            raise ConfigError("WeightSyncConfig.disk_dir is None with transport disk; set --update-weight-disk-dir.")
        if self.bucket_bytes < 1:
            raise ConfigError(f"WeightSyncConfig.bucket_bytes is {self.bucket_bytes}; set --update-weight-buffer-size.")


TrainBackend = Literal["fsdp", "megatron"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class MegatronTrainerConfig:
    """The Megatron trainer's inputs: Megatron's own namespace (slime.megatron parses it) and `ActorConfig`."""

    megatron_args: argparse.Namespace
    actor: Any
    """`slime.megatron.ActorConfig`."""
    loss: Any
    """`slime.loss.LossConfig`."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """One job's configuration: what each host and loop needs, composed and checked before anything starts."""

    args: argparse.Namespace
    """slime's resolved flat flags: what custom functions receive (slime's contract); not read by the hosts
    for their own settings."""
    train_backend: TrainBackend
    loop: LoopConfig
    loss: Any
    """`slime.loss.LossConfig` (the trainer's copy is the same object)."""
    trainer: Any
    """`slime.fsdp.FSDPConfig` or `MegatronTrainerConfig`, per `train_backend`."""
    engines: Any | None
    """`slime.sglang.engine_group.EngineGroupConfig`; None without engines (`--debug-train-only`,
    `--rollout-external`)."""
    weight_sync: WeightSyncConfig
    cpu_threads: int
    """torch threads per CPU process (trainer, local engines); 0 = leave torch's default (GPU runs)."""

    def __post_init__(self) -> None:
        if self.train_backend not in ("fsdp", "megatron"):
            raise ConfigError(f"RunConfig.train_backend is {self.train_backend!r}; use --train-backend fsdp|megatron.")
        expected = "MegatronTrainerConfig" if self.train_backend == "megatron" else "FSDPConfig"
        if type(self.trainer).__name__ != expected:
            raise ConfigError(
                f"RunConfig.trainer is a {type(self.trainer).__name__} but --train-backend is {self.train_backend}; "
                f"compose it with compose_run (expected {expected})."
            )
        if self.weight_sync.fp8 is not None:
            self._check_fp8_training_source()

    def _check_fp8_training_source(self) -> None:
        """FP8 rollout: the engines serve the FP8 `--hf-checkpoint`; training needs bf16 weights from elsewhere."""
        source = self.args.hf_checkpoint
        if self.train_backend == "fsdp":
            raise ConfigError(
                f"--hf-checkpoint {source} is block-FP8 (FP8 rollout) but the fsdp trainer loads its weights from "
                "--hf-checkpoint; use --train-backend megatron with --ref-load <bf16 checkpoint>, or serve a bf16 "
                "--hf-checkpoint."
            )
        if self.trainer.actor.ref_load is None:
            raise ConfigError(
                f"--hf-checkpoint {source} is block-FP8 (FP8 rollout): give the bf16 training weights with --ref-load "
                "(a torch_dist or bf16 HF folder), as slime's FP8 rollout recipe does."
            )
