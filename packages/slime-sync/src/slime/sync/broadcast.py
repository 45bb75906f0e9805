"""Broadcast transport: trainer rank 0 broadcasts flattened buckets to every engine rank over a private group.

Three payload kinds go through `deliver`: `init` (join the group: address, port, world size, backend),
`update` (the version and the bucket manifests to expect) and `destroy`. The tensors themselves travel by
broadcast (gloo on CPU, NCCL on GPU), so `deliver` is called on a helper thread while this thread
broadcasts; `deliver` may block until the engines applied (a plain HTTP post) or return a future. A
receiver that refuses a version still receives the buckets (the broadcast is collective) and drops them.
If a broadcast fails (a peer died, the timeout passed) the group is torn down on both sides and the next
publish rebuilds it.

What one bucket puts on the wire is the sender's `layout` (the `update` payload names it): `buckets` (ours,
what `BroadcastReceiver` takes) sends the bucket's aligned byte buffer in one broadcast; `tensors` sends each
tensor in manifest order with its own dtype and shape (SGLang's `/update_weights_from_distributed` receiver);
`flattened` sends the bucket's tensors back to back without padding in one uint8 broadcast (SGLang's
`load_format="flattened_bucket"`, its `FlattenedTensorBucket` layout).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import torch

from slime.sync.buckets import (
    DEFAULT_BUCKET_BYTES,
    BucketManifest,
    TensorSpec,
    flatten_bucket,
    parse_manifests,
    plan_buckets,
    split_parts,
    unflatten_bucket,
)
from slime.sync.group import WeightGroup, host_store
from slime.sync.handshake import (
    LoadWeights,
    PayloadHeader,
    VersionedReceiver,
    check_newer,
    checksums_of,
    collect_named_tensors,
    publish_stats,
)
from slime.types import ConfigError, WeightSyncError

TRANSPORT = "broadcast"
LAYOUTS = ("buckets", "tensors", "flattened")
"""How a bucket's bytes are broadcast (see the module docstring)."""


class _Delivery(threading.Thread):
    """Runs `deliver(payload)` (and waits on a returned future) while the caller broadcasts."""

    def __init__(self, deliver: Callable[[dict[str, Any]], Any], payload: dict[str, Any]) -> None:
        super().__init__(daemon=True, name="slime-sync-deliver")
        self._deliver, self._payload, self.error = deliver, payload, None
        self.start()

    def run(self) -> None:
        try:
            result = self._deliver(self._payload)
            if callable(getattr(result, "result", None)):
                result.result()
        except BaseException as exc:  # re-raised by finish() on the caller's thread
            self.error = exc

    def wait_alongside(self, done: Callable[[], bool], timeout_s: float, poll_s: float = 0.002) -> None:
        """Poll `done` (this side's broadcasts finished) until true; raise as soon as the engines answered an error.

        An engine that fails mid-update leaves the group's collectives waiting for a peer that never comes, so a
        plain device synchronize would block until NCCL's own timeout; the engine's answer says why, at once.
        """
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.error is not None:
                op = self._payload.get("op")
                raise WeightSyncError(f"weight broadcast failed: the engines refused the {op} ({self.error}); the "
                                      "group is torn down and the next publish rebuilds it.")  # fmt: skip
            if time.monotonic() > deadline:
                raise WeightSyncError(f"weight broadcast failed: not done within {timeout_s} s (engines gone?).")
            time.sleep(poll_s)

    def finish(self, timeout_s: float) -> None:
        self.join(timeout_s)
        if self.is_alive():
            raise WeightSyncError(f"engines did not acknowledge a {self._payload.get('op')} within {timeout_s} s.")
        if self.error is not None:
            raise WeightSyncError(
                f"delivering the {self._payload.get('op')} payload failed: {self.error}"
            ) from self.error


class BroadcastSender:
    """Trainer side (rank 0) of the broadcast transport.

    Args:
        deliver: hands a payload to every engine (each engine rank applies it on its receiver).
        world_size: 1 + the number of engine ranks (receivers have ranks 1..world_size-1).
        backend: "gloo" or "nccl" (default: nccl when `device` is CUDA, else gloo).
        device: where buckets are flattened before broadcasting (CUDA for nccl).
        master_addr / master_port: the rendezvous this process hosts (port 0: any free port).
        bucket_bytes / max_payload_bytes / checksums: as for `SharedMemorySender`.
        timeout_s: bound on the rendezvous, each broadcast and each acknowledgement.
        layout: one of `LAYOUTS`; `buckets` for slime.sync receivers, `tensors` or `flattened` for SGLang.
    """

    def __init__(
        self,
        deliver: Callable[[dict[str, Any]], Any],
        *,
        world_size: int,
        backend: str | None = None,
        device: torch.device | str = "cpu",
        master_addr: str = "127.0.0.1",
        master_port: int = 0,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        max_payload_bytes: int | None = None,
        checksums: bool = False,
        timeout_s: float = 600.0,
        layout: str = "buckets",
    ) -> None:
        if world_size < 2:
            raise ConfigError(f"world_size={world_size} must count the trainer and at least one engine rank.")
        self._deliver, self._world_size = deliver, world_size
        self._device = torch.device(device)
        self._backend = backend or ("nccl" if self._device.type == "cuda" else "gloo")
        self._addr, self._port, self._timeout = master_addr, master_port, timeout_s
        self._bucket_bytes, self._max_payload_bytes, self._checksums = bucket_bytes, max_payload_bytes, checksums
        if layout not in LAYOUTS:
            raise ConfigError(f"layout={layout!r} must be one of {LAYOUTS}: `buckets` for slime.sync receivers, "
                              "`tensors` (or `flattened`) for SGLang engines.")  # fmt: skip
        self._layout = layout
        self._group: WeightGroup | None = None
        self._group_name = ""
        self._last: int | None = None

    def _header(self, op: str, version: int | None = None, part: int = 0, num_parts: int = 1) -> dict[str, Any]:
        v = version if version is not None else max(self._last or 0, 0)
        return {**PayloadHeader(TRANSPORT, v, part, num_parts).to_dict(), "op": op, "group": self._group_name}

    def connect(self) -> None:
        """Create the group: host the store, tell the engines to join, join as rank 0."""
        if self._group is not None:
            return
        name = self._group_name = uuid.uuid4().hex
        store = host_store(self._addr, self._port, self._world_size, self._timeout)
        payload = {
            **self._header("init"),
            "master_addr": self._addr,
            "master_port": store.port,
            "world_size": self._world_size,
            "backend": self._backend,
            "timeout_s": self._timeout,
        }
        delivery = _Delivery(self._deliver, payload)
        group = WeightGroup(
            backend=self._backend,
            master_addr=self._addr,
            master_port=store.port,
            rank=0,
            world_size=self._world_size,
            group_name=name,
            timeout_s=self._timeout,
            store=store,
        )
        try:
            delivery.finish(self._timeout)
        except BaseException:
            group.close()
            raise
        self._group = group

    def publish(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> dict[str, float]:
        """Announce the buckets, broadcast them, wait for the engines; returns bytes, seconds, GB/s, buckets."""
        check_newer(self._last, version)
        self.connect()
        assert self._group is not None
        started = time.perf_counter()
        tensors = dict(collect_named_tensors(named_tensors))
        manifests = plan_buckets([TensorSpec.of(n, t) for n, t in tensors.items()], self._bucket_bytes)
        parts = split_parts(manifests, self._max_payload_bytes)
        try:
            for index, part in enumerate(parts):
                payload = {
                    **self._header("update", version, index, len(parts)),
                    "buckets": [m.to_dict() for m in part],
                    "num_buckets": len(part),
                    "layout": self._layout,
                }
                if self._checksums:
                    payload["checksums"] = checksums_of((n, tensors[n]) for m in part for n in m.names)
                delivery = _Delivery(self._deliver, payload)
                for manifest in part:
                    self._broadcast_bucket(self._group, manifest, tensors)
                if self._device.type == "cuda":
                    sent = torch.cuda.Event()
                    sent.record()  # after the broadcasts: the current stream waits on the group's stream
                    delivery.wait_alongside(sent.query, self._timeout)
                delivery.finish(self._timeout)
        except BaseException as exc:
            # The engines tore their side down if a broadcast failed; either way the next publish rebuilds it.
            self._drop_group(broken=not isinstance(exc, WeightSyncError) or "broadcast failed" in str(exc))
            raise
        self._last = version
        nbytes = sum(m.nbytes for m in manifests)
        return publish_stats(nbytes, started, num_buckets=float(len(manifests)), num_parts=float(len(parts)))

    def _broadcast_bucket(
        self, group: WeightGroup, manifest: BucketManifest, tensors: Mapping[str, torch.Tensor]
    ) -> None:
        if self._layout == "buckets":
            if manifest.nbytes:
                group.broadcast(flatten_bucket(manifest, tensors, device=self._device))
            return
        # SGLang's receivers post one broadcast per tensor (or per bucket) even for empty ones: so do we.
        on_device = [tensors[name].detach().to(self._device).contiguous() for name in manifest.names]
        if self._layout == "tensors":
            for tensor in on_device:
                group.broadcast(tensor)
        else:
            group.broadcast(torch.cat([t.reshape(-1).view(torch.uint8) for t in on_device]))

    def _drop_group(self, *, broken: bool = False) -> None:
        if self._group is not None:
            self._group.close(broken=broken)
            self._group = None

    def close(self) -> None:
        """Tell the engines to leave the group, then leave it (errors from gone engines are ignored)."""
        if self._group is None:
            return
        delivery = _Delivery(self._deliver, self._header("destroy"))
        # Leave while the engines leave: NCCL's shutdown waits for every rank's, so leaving only after their
        # acknowledgement would stall both sides until the timeout.
        self._drop_group()
        try:
            delivery.finish(self._timeout)
        except WeightSyncError:
            pass


class BroadcastReceiver(VersionedReceiver):
    """Engine side (one per engine rank) of the broadcast transport.

    Args:
        load_weights: the engine's loader; gets views of the received buffers on `device`.
        rank: this engine rank's rank in the weight group (1..world_size-1), assigned by the engine launcher.
        device: where buckets are received (CUDA for nccl; call `torch.cuda.set_device` first).
        verify_checksums / trusted_peers: see `VersionedReceiver` (the payload carries no memory handles).
    """

    transport = TRANSPORT

    def __init__(
        self,
        load_weights: LoadWeights,
        *,
        rank: int,
        device: torch.device | str = "cpu",
        verify_checksums: bool = False,
        trusted_peers: Collection[str] = (),
    ) -> None:
        super().__init__(load_weights, verify_checksums=verify_checksums, trusted_peers=trusted_peers)
        if rank < 1:
            raise ConfigError(f"rank={rank}: rank 0 is the trainer; engine ranks start at 1.")
        self._rank, self._device = rank, torch.device(device)
        self._group: WeightGroup | None = None

    @property
    def connected(self) -> bool:
        """Whether this receiver is currently in a weight group."""
        return self._group is not None

    def _control(self, payload: Mapping[str, Any]) -> bool:
        op = payload.get("op")
        if op == "update":
            return False
        self._leave()
        if op == "destroy":
            return True
        if op != "init":
            raise WeightSyncError(f"unknown broadcast op {op!r}.")
        try:
            args = {k: payload[k] for k in ("master_addr", "master_port", "world_size", "backend", "timeout_s")}
            name = str(payload["group"])
        except KeyError as exc:
            raise WeightSyncError(f"broadcast init payload lacks {exc}.") from exc
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)  # NCCL binds the communicator to the current device
        self._group = WeightGroup(rank=self._rank, group_name=name, **args)
        return True

    def _leave(self, *, broken: bool = False) -> None:
        if self._group is not None:
            self._group.close(broken=broken)
            self._group = None

    def _receive(self, payload: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
        layout = payload.get("layout", "buckets")
        if layout != "buckets":
            raise WeightSyncError(f"broadcast payload `layout` is {layout!r}; slime.sync receivers take only "
                                  "'buckets' (tensors/flattened are for SGLang engines): build the sender with "
                                  "layout='buckets'.")  # fmt: skip
        if self._group is None:
            raise WeightSyncError("broadcast update before init: this receiver is in no weight group.")
        manifests = parse_manifests(payload.get("buckets"), payload.get("num_buckets"))
        staged: list[tuple[str, torch.Tensor]] = []
        try:
            for manifest in manifests:
                buffer = torch.empty(manifest.nbytes, dtype=torch.uint8, device=self._device)
                if manifest.nbytes:
                    self._group.broadcast(buffer)
                staged.extend(unflatten_bucket(manifest, buffer))
        except WeightSyncError:
            self._leave(broken=True)  # a failed collective leaves the group unusable
            raise
        return staged

    def _stage(self, header: PayloadHeader, payload: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
        return self._receive(payload)

    def _discard(self, header: PayloadHeader, payload: Mapping[str, Any]) -> None:
        self._receive(payload)  # the sender broadcasts regardless; take part, then drop the bytes
