"""Offload / onload of a model stack for colocated training: free the accelerator memory while engines generate.

Two mechanisms:

- `torch_memory_saver` (when importable, on CUDA, and its allocator hook is active in this process: the process
  was started with its `LD_PRELOAD` hook and `TMS_INIT_ENABLE=1`): `pause()` / `resume()`, as slime does.
- Otherwise a portable fallback: every distinct storage behind the parameters, the DDP parameter/gradient
  buffers and the optimizer (fp32 main parameters, Adam moments) goes through `slime.sync.HostStash`: copied to
  host buffers (pinned on CUDA, allocated once and reused every step) and resized to zero bytes on the device;
  onload resizes it back and copies the bytes in. All tensors and views (`param.main_grad`, optimizer shard views)
  stay valid. Gradient buffers are not copied, only re-zeroed.

In the fallback the optimizer's tensors (fp32 main weights and Adam moments: most of the bytes) have their own
stash, restored behind the step's forward and backward (`HostStash.restore_behind`: a side stream, waited for by
a pre-hook of the inner torch optimizer's step, which is the first thing that reads them), and after the step
`start_offload` starts copying them (and the weights) home, overlapping the weight push; `settle()` waits for both
where a checkpoint or a reset reads or writes that state. `perf/onload_behind_bytes` reports what was still in flight.

Both report the bytes moved and the device memory before and after (`perf/offload_*` metrics). It does not
destroy or rebuild process groups.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import torch

from slime.megatron.torch_optimizers import inner_optimizers
from slime.sync.host_stash import HostStash, distinct_storages, offload_figures, onload_figures


def _optimizer_tensors(optimizer) -> Iterator[torch.Tensor]:
    for inner in inner_optimizers(optimizer):
        for group in inner.param_groups:
            yield from group["params"]
        for state in inner.state.values():
            # not the 0-dim step counters: bytes only, and torch keeps them on the CPU, where HostStash cannot
            # copy behind (an H200 run copied none of the 7.2 GB early because of them)
            yield from (v for v in state.values() if isinstance(v, torch.Tensor) and v.dim() > 0)


def _memory_saver():
    if not torch.cuda.is_available() or os.environ.get("TMS_INIT_ENABLE") != "1":
        return None
    try:
        from torch_memory_saver import torch_memory_saver
    except ImportError:
        return None
    return torch_memory_saver


class Offloader:
    """Moves one `ModelStack`'s device memory to the host and back."""

    def __init__(self, stack) -> None:
        self._stack = stack
        self._saver = _memory_saver()
        self._stash = HostStash()
        self._late = HostStash()
        for inner in inner_optimizers(stack.optimizer):
            self._late.wait_before_step(inner)
            self._stash.wait_before_step(inner)  # a step changes the weights: early copies of them are stale
        self.offloaded = False

    @property
    def mechanism(self) -> str:
        """ "torch_memory_saver" or "fallback"."""
        return "torch_memory_saver" if self._saver is not None else "fallback"

    def _storages(self) -> tuple[list[torch.UntypedStorage], list[torch.UntypedStorage], list[torch.UntypedStorage]]:
        """(weights, optimizer state, gradient buffers), each storage once."""
        seen: set[int] = set()
        ddp_buffers = [b for ddp in self._stack.models for b in ddp.buffers + ddp.expert_parallel_buffers]
        keep = distinct_storages((b.param_data for b in ddp_buffers), seen)
        keep += distinct_storages((p.data for m in self._stack.modules for p in m.parameters()), seen)
        late = distinct_storages(_optimizer_tensors(self._stack.optimizer), seen)
        # last: a grad buffer shared with a kept storage was already taken
        return keep, late, distinct_storages((b.grad_data for b in ddp_buffers), seen)

    def offload(self) -> dict[str, float]:
        """Free the device memory of weights, gradients and optimizer state; returns timing and byte figures."""
        if self.offloaded:
            return {}
        start, before = time.perf_counter(), _allocated()
        if self._saver is not None:
            self._saver.pause()
            moved = 0
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the step's cached activations, which the saver does not own
        else:
            keep, late, grads = self._storages()
            moved = self._late.stash(late) + self._stash.stash(keep, grads)
        self.offloaded = True
        figures = _figures("offload", start, before, moved)
        return figures if self._saver is not None else {**figures, **offload_figures(self._late, self._stash)}

    def onload(self) -> dict[str, float]:
        """Restore what `offload` freed (grads come back zeroed); returns timing figures."""
        if not self.offloaded:
            return {}
        start, before = time.perf_counter(), _allocated()
        if self._saver is not None:
            self._saver.resume()
            moved = 0
        else:
            moved = self._stash.restore() + self._late.restore_behind()
        self.offloaded = False
        behind = self._late.in_flight_bytes
        figures = _figures("onload", start, before, moved, device_wide=not behind)
        return figures if self._saver is not None else {**figures, **onload_figures(self._stash, self._late)}

    def start_offload(self) -> None:
        """In a colocated cycle (this stack was offloaded before, by the fallback), start copying the optimizer
        state and the weights home right after the step, so the copies overlap the weight push (which only reads
        the weights); `offload` finishes them."""
        if self._saver is None and self._late.host_bytes and not self.offloaded:
            keep, late, _ = self._storages()
            self._late.stash_behind(late)
            self._stash.stash_behind(keep)

    def settle(self) -> None:
        """Wait for optimizer state still being restored, forget early copies (before anything but the step reads or
        writes that state: checkpoints, a reset)."""
        self._late.settle()
        self._stash.settle()


def _allocated() -> int:
    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def _figures(kind: str, start: float, before: int, moved: int, *, device_wide: bool = True) -> dict[str, float]:
    if torch.cuda.is_available():
        # a restore behind the step is not waited for: its copies overlap the forward/backward on purpose
        torch.cuda.synchronize() if device_wide else torch.cuda.current_stream().synchronize()
    return {
        f"perf/{kind}_time": time.perf_counter() - start,
        f"perf/{kind}_bytes": float(moved),
        f"perf/{kind}_device_bytes_before": float(before),
        f"perf/{kind}_device_bytes_after": float(_allocated()),
        f"perf/{kind}_device_reserved_after": float(torch.cuda.memory_reserved() if torch.cuda.is_available() else 0),
    }
