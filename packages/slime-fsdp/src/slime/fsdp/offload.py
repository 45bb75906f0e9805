"""Offload / onload of the trainer's accelerator state (colocated training and generation share a GPU).

`offload` parks the sharded parameters, any gradients and every AdamW state tensor in host memory through
`slime.sync.HostStash` (pinned host buffers allocated once and reused every step; the device storages are resized
to zero bytes, so FSDP2's DTensors, the optimizer's references and every view stay valid and nothing is re-pointed)
and empties the CUDA cache; `onload` gives the bytes back. A CPU-only run takes the same steps (its storages are
freed into plain host buffers), which is how the CPU suite checks that every view survives. Process groups are
kept (gloo needs nothing freed; NCCL buffers are small next to weights). It does not back up weights for the ref.

The optimizer state (AdamW moments: two thirds of the bytes) has its own stash, restored behind the step's forward
and backward (`HostStash.restore_behind`: on a side stream, waited for by a pre-hook of the optimizer step), so
only the parameters' copy is on the onload's critical path; and after the step `start_offload` starts copying it
and the parameters home, overlapping the weight push. `settle()` waits for both where something other than the
step reads or writes that state (checkpoints, a reset).

Why storages and not `module.to("cpu")`: moving modules allocates fresh pageable host tensors every step, which
made the offload take 1.8-2.3 s for a 0.6B model on an H100 (half of a colocated step).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from slime.fsdp.model import reshard
from slime.sync.host_stash import HostStash, distinct_storages, offload_figures, onload_figures


def _local(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """The rank's own shard of a DTensor (whose storage is what the device holds), else the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


class Offloader:
    """Parks one model's and its optimizer's device storages in host memory between training steps."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._model = model
        self._optimizer = optimizer
        self._stash = HostStash()
        self._late = HostStash()
        self._late.wait_before_step(optimizer)
        self._stash.wait_before_step(optimizer)  # a step changes the parameters: early copies of them are stale
        self.is_offloaded = False

    def _optimizer_tensors(self) -> Iterator[torch.Tensor | None]:
        for state in self._optimizer.state.values():
            yield from (_local(v) for v in state.values() if isinstance(v, torch.Tensor) and v.dim() > 0)

    @torch.no_grad()
    def offload(self) -> dict[str, float]:
        """Move parameters, gradients and optimizer state to host memory (idempotent); returns the bytes moved and
        where the time went (`perf/offload_*`: see `HostStash.timings`), empty when already offloaded."""
        if self.is_offloaded:
            return {}
        reshard(self._model)
        params, state, grads = self._storages()
        moved = self._late.stash(state) + self._stash.stash(params, grads)
        self.is_offloaded = True
        return {"perf/offload_bytes": float(moved), **offload_figures(self._late, self._stash)}

    def _storages(self) -> tuple[list[torch.UntypedStorage], list[torch.UntypedStorage], list[torch.UntypedStorage]]:
        """(parameters, optimizer state, gradients), each storage once."""
        seen: set[int] = set()
        params = distinct_storages((_local(p) for p in self._model.parameters()), seen)
        state = distinct_storages(self._optimizer_tensors(), seen)
        return params, state, distinct_storages((_local(p.grad) for p in self._model.parameters()), seen)

    def start_offload(self) -> None:
        """In a colocated cycle (this state was offloaded before), start copying the optimizer state and the
        parameters home right after the step, so the copies overlap the weight push (which only reads the
        parameters); `offload` finishes them."""
        if self._late.host_bytes and not self.is_offloaded:
            params, state, _ = self._storages()
            self._late.stash_behind(state)
            self._stash.stash_behind(params)

    @property
    def host_bytes(self) -> int:
        """Host memory kept for the stash (reused every step)."""
        return self._stash.host_bytes + self._late.host_bytes

    @torch.no_grad()
    def onload(self) -> dict[str, float]:
        """Bring back everything `offload` moved (gradients come back zeroed; idempotent); the optimizer state may
        still be arriving (see the module docstring). Returns the bytes copied and those still in flight."""
        if not self.is_offloaded:
            return {}
        moved = self._stash.restore() + self._late.restore_behind()
        self.is_offloaded = False
        return {"perf/onload_bytes": float(moved), **onload_figures(self._stash, self._late)}

    def settle(self) -> None:
        """Wait for optimizer state still being restored, forget early copies (before anything but the step reads or
        writes that state: checkpoints, a reset)."""
        self._late.settle()
        self._stash.settle()
