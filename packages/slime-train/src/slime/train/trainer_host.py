"""`TrainerHost`: one trainer rank (slime.fsdp or slime.megatron) plus its side of the weight sync.

It builds the backend from slime's flags, trains on `RolloutBatch`es, publishes weights to the engines
through a slime.sync transport chosen from the flags (colocated -> shared memory / CUDA IPC; disk; ...),
and saves / loads checkpoints. It runs in a Ray actor or directly in a process; it holds no Ray code.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from slime.train.run_config import MegatronTrainerConfig, RunConfig, WeightSyncConfig
from slime.types import ConfigError, RolloutBatch


def _build_policy(config: RunConfig, rank: int, world_size: int) -> Any:
    if config.train_backend == "fsdp":
        from slime.fsdp import FSDPPolicy, init_distributed

        info = init_distributed("auto") if world_size > 1 else None
        return FSDPPolicy(config.trainer, info)
    try:
        from slime.megatron import MegatronPolicy
    except ImportError as exc:
        raise ConfigError(f"--train-backend megatron is not available here ({exc}); use --train-backend fsdp.") from exc
    trainer: MegatronTrainerConfig = config.trainer
    return MegatronPolicy(trainer.megatron_args, trainer.actor, trainer.loss)


class _Delivery:
    """A sender's `deliver`: one payload to every engine, in the receiver's own format, through one `EngineClient`.

    The client and its event loop live on a thread of their own for the sender's lifetime: a publish delivers one
    payload per bucket, and a client per payload paid a new session and connections each time. Callable from any
    thread (the broadcast sender delivers from a helper thread while it broadcasts); `close()` ends both."""

    def __init__(self, engine_urls: Sequence[str], ws: WeightSyncConfig) -> None:
        from slime.sglang.client import EngineClient

        self._client = EngineClient(
            engine_urls[0], worker_urls=list(engine_urls), backend=ws.engine_backend, tp_size=ws.engine_tp_size
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="weight-delivery", daemon=True)
        self._thread.start()

    def __call__(self, payload: Mapping[str, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(self._client.deliver_weights(payload), self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=60)
        self._loop.close()


def _address_towards(url: str) -> str:
    """This host's IP on the interface that reaches `url` (where engines can reach the broadcast group's rank 0)."""
    host = urlparse(url).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))  # UDP connect sends nothing; it only picks the route
        return str(probe.getsockname()[0])


class TrainerHost:
    """One trainer rank. Rank 0 publishes weights; every rank takes part in gathering them."""

    def __init__(
        self, config: RunConfig, *, rank: int = 0, world_size: int = 1, master: tuple[str, int] | None = None
    ) -> None:
        """`master`: the rendezvous address of rank 0 when `world_size` > 1 (ranks in other processes)."""
        if world_size > 1:
            os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=os.environ.get("LOCAL_RANK", "0"))
            if master is not None:
                os.environ.update(MASTER_ADDR=master[0], MASTER_PORT=str(master[1]))
        self.config, self.rank, self.world_size = config, rank, world_size
        if config.cpu_threads and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(config.cpu_threads)
        self.policy = _build_policy(config, rank, world_size)
        self._urls: tuple[str, ...] = ()
        self._sender: Any = None
        self._delivery: _Delivery | None = None

    def train(self, rollout_id: int, batch: RolloutBatch) -> dict[str, float]:
        """Train on one rollout; metrics as `train/*` (and `perf/*` for timings)."""
        metrics = self.policy.train(rollout_id, batch)
        return {k if "/" in k else f"train/{k}": float(v) for k, v in metrics.items()}

    def _make_sender(self, engine_urls: Sequence[str]) -> Any:
        from slime import sync

        ws = self.config.weight_sync
        deliver = self._delivery = _Delivery(engine_urls, ws)
        if ws.transport == "disk":
            keep = 1_000_000 if ws.keep_files else 1
            return sync.DiskSender(deliver, ws.disk_dir, bucket_bytes=ws.bucket_bytes, keep_versions=keep)
        if ws.engine_backend == "sglang" and not ws.colocate:
            # Disaggregated SGLang engines join an NCCL group with this rank as 0 and receive one broadcast per
            # tensor (SGLang's default receiver); the group is created on the first publish.
            return sync.BroadcastSender(
                deliver,
                world_size=1 + ws.num_engines * ws.engine_tp_size,
                backend="nccl",
                device="cuda",
                master_addr=_address_towards(engine_urls[0]),
                bucket_bytes=ws.bucket_bytes,
                layout="tensors",
            )
        # Colocated engines and (on one machine) every local engine map our buffers directly (CUDA IPC / shm).
        return sync.SharedMemorySender(deliver, bucket_bytes=ws.bucket_bytes)

    def update_weights(self, engine_urls: Sequence[str], version: int) -> dict[str, float]:
        """Publish the current weights as `version` to every engine; returns the sender's figures."""
        named: Iterable[tuple[str, Any]] = self.policy.export_weights()
        if self.rank != 0:
            for _ in named:  # gathers are collective: every rank walks the export
                pass
            return {}
        plan = self.config.weight_sync.fp8
        if plan is not None:  # FP8 rollout: bf16 training weights are quantized block-wise as they stream out
            from slime.sync.fp8_rollout import quantize_for_fp8_engine

            named = quantize_for_fp8_engine(named, plan)
        if self._sender is None or tuple(engine_urls) != self._urls:
            self.shutdown()
            self._sender, self._urls = self._make_sender(engine_urls), tuple(engine_urls)
        return dict(self._sender.publish(named, version))

    def save(self, rollout_id: int) -> str:
        """Checkpoint (and export HF weights when `--save-hf` is set)."""
        path = self.policy.save_checkpoint(rollout_id)
        if self.config.loop.save_hf:
            self.policy.export_hf(self.config.loop.save_hf.format(rollout_id=rollout_id))
        return str(path)

    def load(self, rollout_id: int) -> int:
        """Restore the checkpoint of `rollout_id` from `--load`."""
        load = self.config.loop.load
        if load is None:
            raise ConfigError("TrainerHost.load needs --load.")
        if self.config.train_backend == "megatron":
            return int(self.policy.load(load, step=rollout_id))
        return int(self.policy.load_checkpoint(os.path.join(load, f"iter_{rollout_id:07d}")))

    def offload(self) -> dict[str, float]:
        """Free accelerator memory for the engines (colocate); returns the policy's `perf/offload_*` figures."""
        return dict(self.policy.offload())

    def onload(self) -> dict[str, float]:
        """Take the accelerator back; returns the policy's `perf/onload_*` figures."""
        return dict(self.policy.onload())

    def shutdown(self) -> None:
        """Release the sender and its engine client (the next publish makes new ones)."""
        if self._sender is not None:
            self._sender.close()
        if self._delivery is not None:
            self._delivery.close()
        self._sender = self._delivery = None
