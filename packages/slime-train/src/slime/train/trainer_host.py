"""`TrainerHost`: one trainer rank (slime.fsdp or slime.megatron) plus its side of the weight sync.

It builds the backend from slime's flags, trains on `RolloutBatch`es, publishes weights to the engines
through a slime.sync transport chosen from the flags (colocated -> shared memory / CUDA IPC; disk; ...),
and saves / loads checkpoints. It runs in a Ray actor or directly in a process; it holds no Ray code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from slime.types import ConfigError, RolloutBatch


def cpu_threads_per_process(args: argparse.Namespace) -> int:
    """Threads each CPU process should use: the cores split between the trainer and the local engines.

    Oversubscribing a small machine is ruinous for torch on CPU (idle OpenMP workers spin): on 2 cores a
    train step of the demo took 5 s with default threads and 0.25 s with one thread per process.
    """
    num_engines = args.rollout_num_engines or 1
    return max(1, (os.cpu_count() or 1) // (num_engines + 1))


def _build_policy(args: argparse.Namespace, rank: int, world_size: int) -> Any:
    if args.train_backend == "fsdp":
        from slime.fsdp import FSDPPolicy, init_distributed
        from slime.train.compose import fsdp_config

        info = init_distributed("auto") if world_size > 1 else None
        return FSDPPolicy(fsdp_config(args), info)
    if args.train_backend == "megatron":
        try:
            from slime.megatron import MegatronPolicy  # type: ignore[attr-defined]  # lands with slime.megatron
        except ImportError as exc:
            raise ConfigError(
                f"--train-backend megatron is not available here ({exc}); use --train-backend fsdp."
            ) from exc
        return MegatronPolicy.from_args(args, rank=rank, world_size=world_size)
    raise ConfigError(f"--train-backend {args.train_backend!r} is not one of megatron, fsdp.")


def _deliver(engine_urls: Sequence[str], route: str) -> Any:
    from slime.sglang.client import EngineClient

    def deliver(payload: Mapping[str, Any]) -> Any:
        async def post() -> Any:
            async with EngineClient(engine_urls[0], worker_urls=list(engine_urls)) as client:
                return await client.post_each(route, payload)

        return asyncio.run(post())

    return deliver


class TrainerHost:
    """One trainer rank. Rank 0 publishes weights; every rank takes part in gathering them."""

    def __init__(self, args: argparse.Namespace, *, rank: int = 0, world_size: int = 1) -> None:
        if world_size > 1:
            os.environ.setdefault("RANK", str(rank))
            os.environ.setdefault("WORLD_SIZE", str(world_size))
            os.environ.setdefault("LOCAL_RANK", str(rank))
        self.args, self.rank, self.world_size = args, rank, world_size
        if args.rollout_engine == "local" and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(cpu_threads_per_process(args))
        self.policy = _build_policy(args, rank, world_size)
        self._urls: tuple[str, ...] = ()
        self._sender: Any = None

    def train(self, rollout_id: int, batch: RolloutBatch) -> dict[str, float]:
        """Train on one rollout; metrics as `train/*` (and `perf/*` for timings)."""
        metrics = self.policy.train(rollout_id, batch)
        return {k if "/" in k else f"train/{k}": float(v) for k, v in metrics.items()}

    def _make_sender(self, engine_urls: Sequence[str]) -> Any:
        from slime import sync

        args = self.args
        if args.update_weight_transport == "disk":
            keep = 1_000_000 if args.update_weight_disk_keep_files else 1
            return sync.DiskSender(
                _deliver(engine_urls, "/update_weights_from_disk"),
                args.update_weight_disk_dir,
                bucket_bytes=args.update_weight_buffer_size,
                keep_versions=keep,
            )
        # Colocated engines and (on one machine) every local engine can map our buffers directly.
        return sync.SharedMemorySender(
            _deliver(engine_urls, "/update_weights_from_tensor"), bucket_bytes=args.update_weight_buffer_size
        )

    def update_weights(self, engine_urls: Sequence[str], version: int) -> dict[str, float]:
        """Publish the current weights as `version` to every engine; returns the sender's figures."""
        named: Iterable[tuple[str, Any]] = self.policy.export_weights()
        if self.rank != 0:
            for _ in named:  # gathers are collective: every rank walks the export
                pass
            return {}
        if self._sender is None or tuple(engine_urls) != self._urls:
            if self._sender is not None:
                self._sender.close()
            self._sender, self._urls = self._make_sender(engine_urls), tuple(engine_urls)
        return dict(self._sender.publish(named, version))

    def save(self, rollout_id: int) -> str:
        """Checkpoint (and export HF weights when `--save-hf` is set)."""
        path = self.policy.save_checkpoint(rollout_id)
        if self.args.save_hf:
            self.policy.export_hf(self.args.save_hf.format(rollout_id=rollout_id))
        return str(path)

    def load(self, rollout_id: int) -> int:
        """Restore the checkpoint of `rollout_id` from `--load`."""
        return int(self.policy.load_checkpoint(os.path.join(self.args.load, f"iter_{rollout_id:07d}")))

    def offload(self) -> None:
        """Free accelerator memory for the engines (colocate)."""
        self.policy.offload()

    def onload(self) -> None:
        """Take the accelerator back."""
        self.policy.onload()

    def shutdown(self) -> None:
        """Release the sender."""
        if self._sender is not None:
            self._sender.close()
