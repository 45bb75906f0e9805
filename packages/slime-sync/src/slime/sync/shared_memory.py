"""Colocated transport: one shared-memory (CPU) or CUDA-IPC (GPU) handle per bucket, mapped by the engine.

The sender flattens each bucket into a shareable buffer, delivers one payload with a handle per bucket, and is
done with the buffers once `deliver` returns, that is once the engine has loaded them. CUDA buffers are fresh
for every publish (an engine's loader may still have copies in flight on its stream after it answers). CPU
loaders copy synchronously, so CPU shared-memory buffers are kept and refilled by the next publish, and the
receiver keeps them mapped: fresh shared memory costs a page fault per 4 KiB on both sides, several times the
copy itself. The receiver maps each buffer (no copy through a socket), views the tensors out of it and hands
those views to `load_weights`. Handles name memory on this
machine, so receivers accept them from loopback only. CUDA IPC needs sender and receiver in two processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from slime.sync.buckets import (
    DEFAULT_BUCKET_BYTES,
    TensorSpec,
    flatten_bucket,
    parse_manifests,
    plan_buckets,
    split_parts,
    unflatten_bucket,
)
from slime.sync.handshake import (
    LoadWeights,
    PayloadHeader,
    VersionedReceiver,
    check_newer,
    checksums_of,
    collect_named_tensors,
    publish_stats,
)
from slime.sync.ipc import alloc_shared_buffer, open_buffer, share_buffer
from slime.types import WeightSyncError

TRANSPORT = "shm"


class SharedMemorySender:
    """Trainer side of the colocated transport.

    Args:
        deliver: hands a payload to every colocated engine and returns once they applied it.
        bucket_bytes: bucket size limit (slime's `--update-weight-buffer-size`).
        device: where buffers live (default: each bucket's first tensor's device); CUDA buffers use CUDA IPC.
        max_payload_bytes: split a publish into parts of about this many bytes to bound the extra memory
            (engines then load part by part and a sender dying midway leaves them mixed, with `version` still
            the old one). None sends one payload: one atomic apply, at the cost of one extra copy of the weights.
        checksums: add per-tensor checksums to payloads (for receivers with `verify_checksums=True`).
        reuse_cpu_buffers: keep CPU shared-memory buffers between publishes (one extra copy of the weights stays
            allocated); dropped after a failed delivery, since an engine might still be reading them.
    """

    def __init__(
        self,
        deliver: Callable[[dict[str, Any]], Any],
        *,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        device: torch.device | str | None = None,
        max_payload_bytes: int | None = None,
        checksums: bool = False,
        reuse_cpu_buffers: bool = True,
    ) -> None:
        self._deliver = deliver
        self._reuse = reuse_cpu_buffers
        self._pool: dict[tuple[int, int], torch.Tensor] = {}  # (bucket index, bytes) -> CPU shared buffer
        self._bucket_bytes = bucket_bytes
        self._device = None if device is None else torch.device(device)
        self._max_payload_bytes = max_payload_bytes
        self._checksums = checksums
        self._last: int | None = None

    def publish(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> dict[str, float]:
        """Share every bucket and deliver the handles; returns bytes, seconds, GB/s, buckets and parts."""
        check_newer(self._last, version)
        started = time.perf_counter()
        tensors = dict(collect_named_tensors(named_tensors))
        manifests = plan_buckets([TensorSpec.of(n, t) for n, t in tensors.items()], self._bucket_bytes)
        parts = split_parts(manifests, self._max_payload_bytes)
        pool, self._pool = self._pool, {}
        for index, part in enumerate(parts):
            buffers, buckets = [], []
            for manifest in part:
                buffer = self._buffer(manifest, tensors, pool)
                flatten_bucket(manifest, tensors, out=buffer)
                buffers.append(buffer)
                buckets.append({"manifest": manifest.to_dict(), "handle": share_buffer(buffer)})
            for device in {b.device for b in buffers if b.device.type == "cuda"}:
                # the copies must land before another process reads; the stream that made them, not the device:
                # a trainer's own side-stream copies (slime.sync.host_stash, the optimizer state going home) overlap
                torch.cuda.current_stream(device).synchronize()
            payload = {
                **PayloadHeader(TRANSPORT, version, index, len(parts)).to_dict(),
                "buckets": buckets,
                "num_buckets": len(buckets),
            }
            if self._checksums:
                payload["checksums"] = checksums_of((n, tensors[n]) for m in part for n in m.names)
            try:
                self._deliver(payload)
            except BaseException:
                self._pool = {}  # an engine may still read them: the next publish writes fresh buffers
                raise
            del buffers  # engines loaded them; never reuse a buffer a consumer might still read
            if any(m.nbytes for m in part) and torch.cuda.is_initialized():
                torch.cuda.ipc_collect()  # free CUDA-IPC blocks the engines released (else they wait for an OOM)
        self._last = version
        nbytes = sum(m.nbytes for m in manifests)
        return publish_stats(nbytes, started, num_buckets=float(len(manifests)), num_parts=float(len(parts)))

    def _buffer(
        self, manifest: Any, tensors: Mapping[str, torch.Tensor], pool: dict[tuple[int, int], torch.Tensor]
    ) -> torch.Tensor:
        device = self._device or (tensors[manifest.entries[0].name].device if manifest.entries else None)
        device = device or torch.device("cpu")
        key = (manifest.index, manifest.nbytes)
        buffer = pool.pop(key, None) if device.type == "cpu" else None
        if buffer is None:
            buffer = alloc_shared_buffer(manifest.nbytes, device)
        if device.type == "cpu" and self._reuse:
            self._pool[key] = buffer  # kept only if this publish is delivered (see publish)
        return buffer

    def close(self) -> None:
        """Release the kept CPU buffers (the shared memory goes once the engines unmap it too)."""
        self._pool = {}


class SharedMemoryReceiver(VersionedReceiver):
    """Engine side of the colocated transport; accepts payloads from loopback only (see `slime.sync.peers`).

    `load_weights` receives views of the sender's buffers (CPU shared memory or the trainer's GPU memory), valid
    during the call only. CPU buffers stay mapped until a payload no longer names them.
    """

    transport = TRANSPORT
    loopback_only = True

    def __init__(self, load_weights: LoadWeights, *, verify_checksums: bool = False) -> None:
        super().__init__(load_weights, verify_checksums=verify_checksums)
        self._mapped: dict[tuple[str, str, int], torch.Tensor] = {}

    def _stage(self, header: PayloadHeader, payload: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
        buckets = payload.get("buckets")
        if not isinstance(buckets, list) or not all(isinstance(b, Mapping) and "handle" in b for b in buckets):
            raise WeightSyncError("shm payload needs a list of {manifest, handle} buckets.")
        manifests = parse_manifests([b.get("manifest") for b in buckets], payload.get("num_buckets"))
        staged: list[tuple[str, torch.Tensor]] = []
        mapped: dict[tuple[str, str, int], torch.Tensor] = {}
        for manifest, bucket in zip(manifests, buckets, strict=True):
            handle = bucket["handle"]
            key = (str(handle.get("manager")), str(handle.get("name")), manifest.nbytes)
            buffer = self._mapped.get(key) if handle.get("kind") == "cpu_shm" else None
            if buffer is None:
                buffer = open_buffer(handle, manifest.nbytes)
            if handle.get("kind") == "cpu_shm":
                mapped[key] = buffer
            staged.extend(unflatten_bucket(manifest, buffer))
        self._mapped = mapped
        return staged
