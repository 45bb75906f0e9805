"""Host-memory copies of this rank's parameter shards, by tag (`actor`, `ref`, `teacher`), swapped into the model.

This is how the reference and the OPD teacher cost no accelerator memory: their shards live in (pinned) host
memory and are copied into the same FSDP parameters for their forward, then the actor's shards are copied
back. Each tag costs host RAM of one float32 copy of this rank's shards. Only parameters are kept
(buffers such as rotary tables do not change in training). It does not load or save files.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from slime.fsdp.model import reshard
from slime.types import DataError


def _local(param: Tensor) -> Tensor:
    return param.to_local() if isinstance(param, DTensor) else param


def local_shard(full: Tensor, param: Tensor) -> Tensor:
    """This rank's piece of the full tensor `full` for `param`, split the way FSDP2 shards (dim 0 chunks)."""
    if not isinstance(param, DTensor):
        return full
    mesh = param.device_mesh
    world, rank = mesh.size(), mesh.get_local_rank()
    chunks = list(torch.chunk(full, world, dim=0))
    chunks += [full.new_empty((0, *full.shape[1:]))] * (world - len(chunks))
    return chunks[rank]


class WeightBackup:
    """Tagged host copies of `model`'s trainable and frozen parameter shards."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._tags: dict[str, dict[str, Tensor]] = {}

    def _params(self) -> dict[str, Tensor]:
        reshard(self._model)
        return dict(self._model.named_parameters())

    def __contains__(self, tag: str) -> bool:
        return tag in self._tags

    @property
    def tags(self) -> frozenset[str]:
        """The tags held right now."""
        return frozenset(self._tags)

    def host_tensors(self, tag: str) -> Mapping[str, Tensor]:
        """The host copies of `tag`, by parameter name (read-only view; do not modify)."""
        return self._tags[tag]

    @torch.no_grad()
    def save(self, tag: str) -> None:
        """Copy the live shards into host memory under `tag` (reusing the buffers of an earlier save)."""
        store = self._tags.setdefault(tag, {})
        for name, param in self._params().items():
            local = _local(param)
            buf = store.get(name)
            if buf is None or buf.shape != local.shape:
                pin = local.is_cuda
                buf = torch.empty(local.shape, dtype=local.dtype, device="cpu", pin_memory=pin)
                store[name] = buf
            buf.copy_(local, non_blocking=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    @torch.no_grad()
    def restore(self, tag: str) -> None:
        """Copy the shards saved under `tag` back into the live parameters."""
        store = self._tags[tag]
        for name, param in self._params().items():
            _local(param).copy_(store[name], non_blocking=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    @torch.no_grad()
    def set_from_full(self, tag: str, state_dict: Mapping[str, Tensor], *, source: str) -> None:
        """Store `tag` from full (unsharded) tensors named like the model's parameters (an HF state dict).

        Raises:
            DataError: a parameter is missing from `state_dict` or has another shape.
        """
        store: dict[str, Tensor] = {}
        for name, param in self._params().items():
            if name not in state_dict:
                raise DataError(f"{source}: no tensor {name!r}; the checkpoint must have the actor's architecture.")
            full = state_dict[name]
            if tuple(full.shape) != tuple(param.shape):
                raise DataError(f"{source}: {name!r} has shape {tuple(full.shape)}, the model {tuple(param.shape)}.")
            piece = local_shard(full, param).to(dtype=param.dtype)
            store[name] = piece.pin_memory() if _local(param).is_cuda else piece.clone()
        self._tags[tag] = store

    def drop(self, tag: str) -> None:
        """Free the host copies of `tag`."""
        self._tags.pop(tag, None)
