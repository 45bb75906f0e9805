"""An HF model folder on disk, read lazily: config, safetensors weight files, tensor shapes, assets.

Shapes and dtypes come from the safetensors headers, so validating a checkpoint reads no weight data. Tensors
are loaded one at a time. Only safetensors weights are supported (`.bin` / `.pt` folders are refused); the
index file, when present, decides which files hold the weights. It writes nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from slime.sync.hf_folder import WEIGHT_SUFFIXES
from slime.sync.shard_writer import INDEX
from slime.types import ConfigError

__all__ = ["INDEX", "WEIGHT_SUFFIXES", "HFCheckpoint"]

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
}  # fmt: skip


class HFCheckpoint:
    """One HF model folder; `flag` names the command-line flag it came from, for error messages."""

    def __init__(self, path: str | Path, *, flag: str = "--hf-checkpoint") -> None:
        self.path = Path(path)
        self.flag = flag
        if not (self.path / "config.json").is_file():
            raise ConfigError(f"{flag} {str(self.path)!r} has no config.json; point it at an HF model folder.")

    @functools.cached_property
    def config(self) -> Any:
        """The transformers config of the folder."""
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.path)

    def config_dict(self) -> dict[str, Any]:
        """`config.json` as written on disk."""
        return json.loads((self.path / "config.json").read_text())

    @functools.cached_property
    def _files(self) -> dict[str, Path]:
        """Tensor name -> the safetensors file that holds it."""
        if (self.path / INDEX).is_file():
            weight_map = json.loads((self.path / INDEX).read_text())["weight_map"]
            return {name: self.path / file for name, file in weight_map.items()}
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ConfigError(
                f"{self.flag} {str(self.path)!r} holds no *.safetensors weights; only safetensors checkpoints are "
                "supported (re-save the model with save_pretrained(safe_serialization=True))."
            )
        from safetensors import safe_open

        names: dict[str, Path] = {}
        for file in files:
            with safe_open(file, "pt") as handle:
                names |= dict.fromkeys(handle.keys(), file)
        return names

    @functools.cached_property
    def tensor_infos(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Tensor name -> (shape, dtype), from the safetensors headers only."""
        from safetensors import safe_open

        infos: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        by_file: dict[Path, list[str]] = {}
        for name, file in self._files.items():
            by_file.setdefault(file, []).append(name)
        for file, names in by_file.items():
            with safe_open(file, "pt") as handle:
                for name in names:
                    part = handle.get_slice(name)
                    infos[name] = (tuple(part.get_shape()), _DTYPES.get(part.get_dtype(), torch.float32))
        return infos

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape."""
        return {name: shape for name, (shape, _) in self.tensor_infos.items()}

    def weights_dtype(self) -> torch.dtype:
        """The dtype most of the weights are stored in (what a lossless conversion keeps)."""
        counts: dict[torch.dtype, int] = {}
        for _, dtype in self.tensor_infos.values():
            counts[dtype] = counts.get(dtype, 0) + 1
        return max(counts, key=counts.__getitem__)

    def iter_tensors(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Load `names` one at a time (each file is opened once)."""
        from safetensors import safe_open

        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self._files[name], []).append(name)
        for file, in_file in by_file.items():
            with safe_open(file, "pt") as handle:
                for name in in_file:
                    yield name, handle.get_tensor(name)

    def asset_files(self) -> list[Path]:
        """Every plain file of the folder except config.json and weights (tokenizer, templates, generation config)."""
        return sorted(
            p
            for p in self.path.iterdir()
            if p.is_file() and p.name != "config.json" and not p.name.endswith(WEIGHT_SUFFIXES)
        )
