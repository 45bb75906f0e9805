"""Offload / onload of the trainer's accelerator state (colocated training and generation share a GPU).

`offload` moves the sharded parameters, any gradients and every AdamW state tensor to host memory and
releases the CUDA cache; `onload` moves exactly those back. FSDP2 re-points its shards on `module.to()`,
so nothing is rebuilt. On a CPU-only run both are bookkeeping no-ops. Process groups are kept (gloo
needs nothing freed; NCCL buffers are small next to weights). It does not back up weights for the ref.
"""

from __future__ import annotations

import torch
from torch import nn

from slime.fsdp.model import reshard


class Offloader:
    """Remembers where each optimizer tensor lived so that `onload` restores the exact placement."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self._model = model
        self._optimizer = optimizer
        self._device = device
        self._moved: list[tuple[dict[str, object], str]] = []
        self.is_offloaded = False

    @torch.no_grad()
    def offload(self) -> None:
        """Move parameters, gradients and optimizer state to CPU (idempotent)."""
        if self.is_offloaded:
            return
        reshard(self._model)
        self._model.to("cpu")
        for state in self._optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.device.type != "cpu":
                    state[key] = value.to("cpu", non_blocking=True)
                    self._moved.append((state, key))
        if self._device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        self.is_offloaded = True

    @torch.no_grad()
    def onload(self) -> None:
        """Move everything `offload` moved back to the training device (idempotent)."""
        if not self.is_offloaded:
            return
        self._model.to(self._device)
        for state, key in self._moved:
            state[key] = state[key].to(self._device, non_blocking=True)  # type: ignore[attr-defined]
        self._moved.clear()
        if self._device.type == "cuda":
            torch.cuda.synchronize()
        self.is_offloaded = False
