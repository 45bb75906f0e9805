"""`ShardWriter`: safetensors shards of bounded size plus the index, HF's way, from `(name, tensor)` pairs.

It takes the pairs in any order, copies each to a contiguous CPU tensor of its own (so views of fused Megatron
tensors never share storage in a file), and flushes a shard once it would exceed `shard_bytes`. `finish()` names
the shards: one file is `model.safetensors`; several are `model-0000i-of-0000N.safetensors` with
`model.safetensors.index.json`. Both the trainers' HF export (`slime.sync.hf_folder`) and the offline converters
(`slime.convert`) write through it. It does not make the folder atomic, write config files or convert names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from slime.types import DataError

INDEX = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 1024**3
"""slime's `--chunk-size` default: 5 GiB per safetensors file."""


class ShardWriter:
    """Accumulates tensors into safetensors shards inside `folder` (see the module docstring)."""

    def __init__(self, folder: Path, *, shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.folder = folder
        self.shard_bytes = shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[list[str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        """Name -> shape of every tensor added so far."""
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Queue one tensor (copied); flushes the current shard first when this one would overflow it."""
        if name in self.shapes:
            raise DataError(f"tensor {name!r} was produced twice; the checkpoint maps two weights onto one name.")
        self.shapes[name] = tuple(tensor.shape)
        nbytes = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + nbytes > self.shard_bytes:
            self._flush()
        self._pending[name] = tensor.detach().to("cpu", copy=True).contiguous()
        self._pending_bytes += nbytes
        self.total_bytes += nbytes

    def _flush(self) -> None:
        from safetensors.torch import save_file

        if not self._pending:
            return
        self._shards.append(list(self._pending))
        save_file(self._pending, str(self.folder / f"shard-{len(self._shards):05d}.part"), {"format": "pt"})
        self._pending, self._pending_bytes = {}, 0

    def finish(self) -> list[str]:
        """Write the last shard, give the shards their final names and write the index; returns the file names."""
        self._flush()
        count = len(self._shards)
        if count == 0:
            raise DataError("no tensor was converted; the input checkpoint holds no model weights.")
        if count == 1:
            os.rename(self.folder / "shard-00001.part", self.folder / "model.safetensors")
            return ["model.safetensors"]
        weight_map: dict[str, str] = {}
        files = []
        for i, names in enumerate(self._shards, start=1):
            file = f"model-{i:05d}-of-{count:05d}.safetensors"
            os.rename(self.folder / f"shard-{i:05d}.part", self.folder / file)
            weight_map |= dict.fromkeys(names, file)
            files.append(file)
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (self.folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return files
