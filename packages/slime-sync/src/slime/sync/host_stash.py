"""`HostStash`: park a trainer's device storages in host memory while colocated engines use the accelerator.

`stash(keep, zero_only)` copies every storage in `keep` into a host buffer and frees its device memory by resizing
the storage to zero bytes; every tensor, view and optimizer reference over it stays valid (the storage object is
the same, only its bytes are gone). Storages in `zero_only` (gradient buffers) are freed without a copy and come
back zero-filled. `restore()` resizes each storage back and copies its bytes in.

Why host buffers are kept between stashes: allocating pinned memory is slow (cudaHostAlloc of gigabytes takes about
as long as the copy itself), and pageable copies run at a fraction of PCIe speed. A colocated loop stashes the same
storages every step, so buffer i is reused while storage i keeps its size. The price is host memory equal to the
stashed bytes, held for the whole run (it is needed during every rollout anyway).

`stash_behind(keep)` starts a later `stash(keep)`'s copies early on that side stream (state the step has just
written and nothing changes until the offload: the copies overlap the weight push); `stash` then only waits and
frees. `restore_behind()` is the overlapped variant for state that is read late (optimizer moments, fp32 main weights:
only the optimizer step reads them). On CUDA the copies go on a side stream and `wait()` makes the current stream
wait for them, so they run on the copy engine while forward and backward run on the SMs; trainers call `wait()`
before the optimizer step (`wait_before_step` registers that as a step pre-hook). On the CPU it is `restore()`.
Freeing at the next `stash` is safe for memory the side stream allocated: `stash` synchronizes the device first.

Why a restore first reserves one block for all its storages (`_reserve`): after the offload's `empty_cache()` each
of a trainer's ~930 storages would be its own `cudaMalloc` (an H100 run spent 0.02-0.03 s there), and at the next
offload its own `cudaFree` (most of the 0.05-0.09 s `free` figure). Carved from one cached block they cost one call
each way. The block is sized to the bytes exactly, so no other tensor can take a piece of it and keep it alive.

It does not choose what to stash (trainers do: `distinct_storages` helps), and does not touch the caching
allocator beyond that reservation and one `empty_cache()` after freeing, so that the engines can take the memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import torch


def distinct_storages(
    tensors: Iterable[torch.Tensor | None], seen: set[int] | None = None
) -> list[torch.UntypedStorage]:
    """The untyped storages behind `tensors`, each once (tensors sharing a storage, views, ...), none of zero bytes.

    `seen` (data pointers) is shared between calls so that a second group leaves out what the first took."""
    seen = set() if seen is None else seen
    out: list[torch.UntypedStorage] = []
    for tensor in tensors:
        if tensor is None:
            continue
        storage = tensor.untyped_storage()
        if storage.nbytes() and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            out.append(storage)
    return out


class HostStash:
    """Host copies of a set of device storages, with the host buffers kept for the next stash."""

    def __init__(self) -> None:
        self._buffers: list[torch.UntypedStorage] = []
        self._held: list[tuple[torch.UntypedStorage, torch.UntypedStorage | None, int]] = []
        self._pending: torch.cuda.Event | None = None
        self._pending_bytes = 0
        self._stream: torch.cuda.Stream | None = None
        self._behind: tuple[list[int], list[int], torch.cuda.Event] | None = None
        self._tail: torch.Tensor | None = None  # see `_reserve`
        self.timings: dict[str, float] = {}
        """Where the last `stash` spent its time (seconds): `wait_behind` for copies `stash_behind` started,
        `copy` queueing and waiting for its own copies, `free` resizing and emptying the cache; and `behind_bytes`,
        the bytes it took from `stash_behind` instead of copying. Colocated loops log these."""
        self.restore_timings: dict[str, float] = {}
        """The last `restore` / `restore_behind` (seconds): `alloc` giving the storages their device memory back,
        `copy` queueing the copies and, for `restore`, waiting for them (`restore_behind` does not wait)."""

    @property
    def stashed(self) -> bool:
        return bool(self._held)

    @property
    def host_bytes(self) -> int:
        """Host memory held by the reusable buffers."""
        return sum(b.nbytes() for b in self._buffers)

    def _buffer(self, index: int, like: torch.UntypedStorage) -> torch.UntypedStorage:
        if index < len(self._buffers) and self._buffers[index].nbytes() == like.nbytes():
            return self._buffers[index]
        host = torch.UntypedStorage(like.nbytes(), device="cpu")
        host = host.pin_memory() if like.device.type == "cuda" else host
        if index < len(self._buffers):
            self._buffers[index] = host
        else:
            self._buffers.append(host)
        return host

    def stash(self, keep: Sequence[torch.UntypedStorage], zero_only: Sequence[torch.UntypedStorage] = ()) -> int:
        """Copy `keep` to host, free `keep` and `zero_only` on the device; returns the bytes copied.

        Raises:
            RuntimeError: already stashed (restore first: a second stash would overwrite the host copies).
        """
        if self._held:
            raise RuntimeError("HostStash.stash called twice without restore(); the first copies would be lost")
        self.wait()  # a restore still in flight finishes before its storages are read again
        started = time.perf_counter()
        copied = self._take_behind(keep)
        waited = time.perf_counter()
        del self._buffers[len(keep) :]
        for index, storage in enumerate(keep):
            host = self._buffer(index, storage)
            if not copied:
                host.copy_(storage, non_blocking=True)
            self._held.append((storage, host, storage.nbytes()))
        self._held.extend((s, None, s.nbytes()) for s in zero_only)
        _synchronize(self._held)  # every copy has landed before its source is freed
        landed = time.perf_counter()
        for storage, _, _ in self._held:
            storage.resize_(0)
        self._tail = None  # with the storages gone the reserved block is whole again, and empty_cache returns it
        if any(s.device.type == "cuda" for s, _, _ in self._held):
            torch.cuda.empty_cache()
        moved = sum(n for _, h, n in self._held if h is not None)
        self.timings = {
            "wait_behind": waited - started,
            "copy": landed - waited,
            "free": time.perf_counter() - landed,
            "behind_bytes": float(moved if copied else 0),
        }
        return moved

    def restore(self) -> int:
        """Give every stashed storage its bytes back (zero-only ones zero-filled); returns the bytes copied."""
        moved = self._refill()
        queued = time.perf_counter()
        _synchronize(self._held)  # the host buffers are rewritten at the next stash
        self.restore_timings["copy"] += time.perf_counter() - queued
        self._held.clear()
        return moved

    def _refill(self) -> int:
        """Resize every held storage back and queue its bytes (zeros for zero-only ones); returns bytes copied.

        Allocation is timed apart from the copies (`restore_timings`): after the offload's `empty_cache()` every
        storage is a fresh device allocation."""
        started = time.perf_counter()
        if self._held:  # (a restore with nothing stashed must not let go of the last restore's tail)
            self._tail = _reserve([n for s, _, n in self._held if s.device.type == "cuda"])
        for storage, _, nbytes in self._held:
            storage.resize_(nbytes)
        allocated = time.perf_counter()
        moved = 0
        for storage, host, _ in self._held:
            if host is None:
                torch.tensor([], dtype=torch.uint8, device=storage.device).set_(storage).zero_()
            else:
                storage.copy_(host, non_blocking=True)
                moved += storage.nbytes()
        self.restore_timings = {"alloc": allocated - started, "copy": time.perf_counter() - allocated}
        return moved

    def restore_behind(self) -> int:
        """`restore()` with the copies on a side stream (CUDA): returns at once; `wait()` before using the storages.

        Returns the bytes copied (in flight on CUDA). The host buffers stay untouched until the next `stash`."""
        if not any(s.device.type == "cuda" for s, _, _ in self._held):
            return self.restore()
        with torch.cuda.stream(self._side_stream()):  # after whatever the current stream queued (onloads, frees)
            moved = self._refill()  # allocated for the side stream; freed only after a full synchronize
            self._pending = torch.cuda.Event()
            self._pending.record(self._stream)
        self._pending_bytes = moved
        self._held.clear()
        return moved

    @property
    def in_flight(self) -> bool:
        """Whether a `restore_behind` has not been waited for yet."""
        return self._pending is not None

    @property
    def in_flight_bytes(self) -> int:
        """Bytes of a `restore_behind` not waited for yet (0 on the CPU, where it restores at once)."""
        return self._pending_bytes if self._pending is not None else 0

    def wait(self) -> None:
        """Make the current stream wait for a `restore_behind` (no-op when none is in flight)."""
        if self._pending is not None:
            torch.cuda.current_stream().wait_event(self._pending)
            self._pending = None

    def stash_behind(self, keep: Sequence[torch.UntypedStorage]) -> None:
        """Start `stash(keep)`'s copies on the side stream (CUDA), to overlap whatever runs before the `stash(keep)`
        that finishes it (frees the storages). The storages must not change in between: an optimizer step (see
        `wait_before_step`) or `discard_behind()` drops the early copies, and `stash` then copies again.
        A no-op on the CPU.

        Raises:
            ValueError: `keep` mixes CUDA and host storages (say, an optimizer's 0-dim step counters, which torch keeps
                on the CPU): nothing could be copied early, and silently copying nothing cost a colocated step 0.1 s.
        """
        self.discard_behind()
        on_cuda = [s.device.type == "cuda" for s in keep]
        if any(on_cuda) and not all(on_cuda):
            devices = sorted({str(s.device) for s in keep})
            raise ValueError(
                f"HostStash.stash_behind got storages on {devices}; pass only the accelerator's (leave host tensors, "
                "such as 0-dim optimizer step counters, out of the stash)"
            )
        if self._held or not keep or not all(on_cuda):
            return
        side = self._side_stream()  # after the step that wrote them
        del self._buffers[len(keep) :]
        with torch.cuda.stream(side):
            for index, storage in enumerate(keep):
                self._buffer(index, storage).copy_(storage, non_blocking=True)
            done = torch.cuda.Event()
            done.record(side)
        self._behind = ([s.data_ptr() for s in keep], [s.nbytes() for s in keep], done)

    def _side_stream(self) -> torch.cuda.Stream:
        """The stash's own CUDA stream, ordered after everything the current stream has queued."""
        current = torch.cuda.current_stream()
        self._stream = self._stream or torch.cuda.Stream(device=current.device)
        self._stream.wait_stream(current)
        return self._stream

    def discard_behind(self) -> None:
        """Forget copies started by `stash_behind` (their storages are about to change)."""
        if self._behind is not None:
            self._behind[2].synchronize()  # the host buffers may be rewritten only after those copies finished
            self._behind = None

    def settle(self) -> None:
        """Wait for a `restore_behind` and forget `stash_behind` copies: before anything but the optimizer step reads
        or writes the storages (a step, a checkpoint, a reset)."""
        self.wait()
        self.discard_behind()

    def _take_behind(self, keep: Sequence[torch.UntypedStorage]) -> bool:
        """Whether `stash_behind` already copied exactly `keep` (then wait for those copies); else forget them."""
        behind, self._behind = self._behind, None
        if behind is None:
            return False
        behind[2].synchronize()
        return behind[0] == [s.data_ptr() for s in keep] and behind[1] == [s.nbytes() for s in keep]

    def wait_before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Register a step pre-hook on a torch optimizer: wait for state restored behind, and forget copies started
        behind (the step is about to change the state)."""

        optimizer.register_step_pre_hook(lambda *_: self.settle())


def offload_figures(*stashes: HostStash) -> dict[str, float]:
    """The `timings` of `stashes`' last `stash` summed, as a trainer's `perf/offload_*` metrics (seconds, bytes)."""
    keys = ("wait_behind", "copy", "free")
    out = {f"perf/offload_{k}_time": sum(s.timings.get(k, 0.0) for s in stashes) for k in keys}
    out["perf/offload_behind_bytes"] = sum(s.timings.get("behind_bytes", 0.0) for s in stashes)
    return out


def onload_figures(restored: HostStash, behind: HostStash) -> dict[str, float]:
    """A trainer's `perf/onload_*` breakdown: `restored` came back at once, `behind` on the side stream."""
    return {
        "perf/onload_alloc_time": restored.restore_timings.get("alloc", 0.0) + behind.restore_timings.get("alloc", 0.0),
        "perf/onload_copy_time": restored.restore_timings.get("copy", 0.0),
        "perf/onload_queue_behind_time": behind.restore_timings.get("copy", 0.0),
        "perf/onload_behind_bytes": float(behind.in_flight_bytes),
    }


def summed_figures(figures: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Several offloaders' figures (actor, critic, ...) as one, key by key."""
    out: dict[str, float] = {}
    for one in figures:
        for key, value in one.items():
            out[key] = out.get(key, 0.0) + value
    return out


def _synchronize(held: Sequence[tuple[torch.UntypedStorage, torch.UntypedStorage | None, int]]) -> None:
    if any(s.device.type == "cuda" for s, _, _ in held):
        torch.cuda.synchronize()


_ALIGN = 512  # the caching allocator's size granularity ...
_SMALL = 1 << 20  # ... the largest request it serves from its small pool (a block of its own, not ours)
_SEGMENT = 2 << 20  # ... the rounding of a large segment (cudaMalloc) ...
_MIN_SEGMENT = 10 << 20  # ... for requests from this size up (smaller ones get a 20 MiB segment to share)


def _reserve(sizes: Sequence[int]) -> torch.Tensor | None:
    """Put one free block of exactly the bytes that the large ones of `sizes` will take (rounded as the caching
    allocator rounds them) in the current stream's pool, so the resizes that follow carve it up instead of calling
    `cudaMalloc` per storage.

    Returns what holds the block's 2 MiB rounding, or None. Left free, a remainder over 1 MiB would be a block that
    any tensor of that size could take, pinning the whole segment through the next `empty_cache()`. Does nothing
    (None) on the CPU, for one storage, below 10 MiB, or when the device cannot give one block that large."""
    large = [-(-n // _ALIGN) * _ALIGN for n in sizes if n > _SMALL]
    total = sum(large)
    if len(large) < 2 or total < _MIN_SEGMENT:
        return None
    segment = -(-total // _SEGMENT) * _SEGMENT
    try:
        torch.empty(segment, dtype=torch.uint8, device="cuda")  # freed at once: one cached block of `segment` bytes
    except torch.OutOfMemoryError:  # fragmented: the storages still fit one by one
        return None
    tail = segment - total
    # taken first, from the block's start; the storages then take the rest exactly. A tail of 1 MiB or less is
    # not split off (it stays part of the last storage's block).
    return torch.empty(tail, dtype=torch.uint8, device="cuda") if tail > _SMALL else None
