"""Host-memory copies of a model's weights, by tag ("actor", "ref", "old_actor"), swapped into the live model.

The reference model (and an optional frozen old actor) cost no accelerator memory: their weights live in
(pinned, when CUDA exists) CPU tensors and are copied into the one live model only for their forward pass, then
the actor's are copied back. Only this rank's shards are kept (TP/PP/EP-local parameters). It does not touch the
optimizer's fp32 main parameters: those stay the actor's throughout, so a swap never disturbs training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def _named_tensors(modules: Sequence[torch.nn.Module]) -> Iterator[tuple[str, torch.Tensor]]:
    for i, module in enumerate(modules):
        for name, param in module.named_parameters():
            yield f"{i}.{name}", param
        for name, buf in module.named_buffers():
            yield f"{i}.{name}", buf


class WeightBackups:
    """Tagged CPU copies of the parameters (and buffers) of `modules` (this rank's unwrapped GPTModels)."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        self._modules = list(modules)
        self._backups: dict[str, dict[str, torch.Tensor]] = {}
        self._pin = torch.cuda.is_available()

    @property
    def tags(self) -> frozenset[str]:
        """Tags currently held."""
        return frozenset(self._backups)

    def nbytes(self, tag: str) -> int:
        """Host bytes held by `tag`."""
        return sum(t.numel() * t.element_size() for t in self._backups[tag].values())

    @torch.no_grad()
    def save(self, tag: str) -> None:
        """Copy the live weights into the backup `tag` (allocating it on first use, reusing it after)."""
        backup = self._backups.get(tag)
        if backup is None:
            backup = {}
            for name, t in _named_tensors(self._modules):
                backup[name] = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=self._pin)
            self._backups[tag] = backup
        for name, t in _named_tensors(self._modules):
            backup[name].copy_(t, non_blocking=self._pin)
        if self._pin:
            torch.cuda.synchronize()

    @torch.no_grad()
    def load(self, tag: str) -> None:
        """Copy the backup `tag` into the live weights (they then compute that model)."""
        backup = self._backups[tag]
        for name, t in _named_tensors(self._modules):
            t.copy_(backup[name], non_blocking=self._pin)
        if self._pin:
            torch.cuda.synchronize()

    def drop(self, tag: str) -> None:
        """Free the host memory of `tag`."""
        self._backups.pop(tag, None)

    def get(self, tag: str) -> dict[str, torch.Tensor]:
        """The raw CPU tensors of `tag`, keyed `"<chunk>.<parameter name>"` (read-only use)."""
        return self._backups[tag]
