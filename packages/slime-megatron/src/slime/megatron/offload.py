"""Offload / onload of a model stack for colocated training: free the accelerator memory while engines generate.

Two mechanisms:

- `torch_memory_saver` (when importable, on CUDA, and its allocator hook is active in this process: the process
  was started with its `LD_PRELOAD` hook and `TMS_INIT_ENABLE=1`): `pause()` / `resume()`, as slime does.
- Otherwise a portable fallback: every distinct storage behind the parameters, the DDP parameter/gradient
  buffers and the optimizer (fp32 main parameters, Adam moments) is copied to host memory (pinned on CUDA) and
  its device storage is resized to zero bytes; onload resizes it back and copies the bytes in. All tensors and
  views (`param.main_grad`, optimizer shard views) stay valid. Gradient buffers are not copied, only re-zeroed.

Both report the bytes moved and the device memory before and after (`perf/offload_*` metrics). It does not
destroy or rebuild process groups.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import torch


def _optimizer_tensors(optimizer) -> Iterator[torch.Tensor]:
    if optimizer is None:
        return
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if inner is None:
            continue
        for group in inner.param_groups:
            yield from group["params"]
        for state in inner.state.values():
            yield from (v for v in state.values() if isinstance(v, torch.Tensor))


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
        self._host: list[tuple[torch.UntypedStorage, torch.UntypedStorage | None, int]] = []
        self.offloaded = False

    @property
    def mechanism(self) -> str:
        """ "torch_memory_saver" or "fallback"."""
        return "torch_memory_saver" if self._saver is not None else "fallback"

    def _storages(self) -> tuple[list[torch.UntypedStorage], list[torch.UntypedStorage]]:
        keep, grads, seen = [], [], set()

        def add(tensor: torch.Tensor | None, into: list) -> None:
            if tensor is None:
                return
            storage = tensor.untyped_storage()
            if storage.nbytes() and storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                into.append(storage)

        for ddp in self._stack.models:
            for buffer in ddp.buffers + ddp.expert_parallel_buffers:
                add(buffer.param_data, keep)
        for module in self._stack.modules:
            for param in module.parameters():
                add(param.data, keep)
        for tensor in _optimizer_tensors(self._stack.optimizer):
            add(tensor, keep)
        for ddp in self._stack.models:  # last: a grad buffer shared with a kept storage was already taken
            for buffer in ddp.buffers + ddp.expert_parallel_buffers:
                add(buffer.grad_data, grads)
        return keep, grads

    def offload(self) -> dict[str, float]:
        """Free the device memory of weights, gradients and optimizer state; returns timing and byte figures."""
        if self.offloaded:
            return {}
        start, before = time.perf_counter(), _allocated()
        if self._saver is not None:
            self._saver.pause()
            moved = 0
        else:
            keep, grads = self._storages()
            pin = torch.cuda.is_available()
            for storage in keep:
                host = torch.UntypedStorage(storage.nbytes(), device="cpu")
                host = host.pin_memory() if pin else host
                host.copy_(storage)
                self._host.append((storage, host, storage.nbytes()))
            self._host.extend((s, None, s.nbytes()) for s in grads)
            for storage, _, _ in self._host:
                storage.resize_(0)
            moved = sum(n for _, h, n in self._host if h is not None)
        if torch.cuda.is_available():
            # Freed blocks stay reserved by PyTorch's caching allocator (activations included) until emptied: without
            # this a colocated engine's resume runs out of memory (seen on an H100 with the fallback).
            torch.cuda.empty_cache()
        self.offloaded = True
        return _figures("offload", start, before, moved)

    def onload(self) -> dict[str, float]:
        """Restore what `offload` freed (grads come back zeroed); returns timing figures."""
        if not self.offloaded:
            return {}
        start, before = time.perf_counter(), _allocated()
        if self._saver is not None:
            self._saver.resume()
            moved = 0
        else:
            moved = 0
            for storage, host, nbytes in self._host:
                storage.resize_(nbytes)
                if host is None:
                    _zero(storage)
                else:
                    storage.copy_(host)
                    moved += nbytes
            self._host.clear()
        self.offloaded = False
        return _figures("onload", start, before, moved)


def _zero(storage: torch.UntypedStorage) -> None:
    torch.tensor([], dtype=torch.uint8, device=storage.device).set_(storage).zero_()


def _allocated() -> int:
    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def _figures(kind: str, start: float, before: int, moved: int) -> dict[str, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return {
        f"perf/{kind}_time": time.perf_counter() - start,
        f"perf/{kind}_bytes": float(moved),
        f"perf/{kind}_device_bytes_before": float(before),
        f"perf/{kind}_device_bytes_after": float(_allocated()),
        f"perf/{kind}_device_reserved_after": float(torch.cuda.memory_reserved() if torch.cuda.is_available() else 0),
    }
