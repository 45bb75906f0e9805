"""Megatron checkpoint directory layout: the tracker file, `iter_<7 digits>` folders, and HF-folder detection.

Pure path logic (no torch, no megatron), shared by `checkpoint` (save/load) and `load_plan` (what to load).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slime.types import ConfigError

TRACKER = "latest_checkpointed_iteration.txt"
"""Name of the file in a checkpoint root that holds the newest iteration."""


def iteration_dir(root: str | os.PathLike, iteration: int | str) -> Path:
    """`<root>/iter_0000005` for 5, `<root>/release` for "release"."""
    name = "release" if iteration == "release" else f"iter_{int(iteration):07d}"
    return Path(root) / name


def read_tracker(root: str | os.PathLike) -> int | str | None:
    """The iteration named by `<root>/latest_checkpointed_iteration.txt` (an int or "release"), or None."""
    path = Path(root) / TRACKER
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return "release" if text == "release" else int(text)


def is_megatron_checkpoint(root: str | os.PathLike | None) -> bool:
    """Whether `root` is a Megatron checkpoint root (has the tracker file)."""
    return root is not None and (Path(root) / TRACKER).is_file()


def is_hf_checkpoint(path: str | os.PathLike | None) -> bool:
    """Whether `path` is an HF model folder (config.json with a model_type, plus safetensors weights)."""
    if path is None or not (Path(path) / "config.json").is_file():
        return False
    config = json.loads((Path(path) / "config.json").read_text())
    return "model_type" in config and any(Path(path).glob("*.safetensors"))


def resolve_iteration(root: str | os.PathLike, step: int | None) -> int | str:
    """`step` if given, else the tracker's; raises `ConfigError` when the directory does not exist."""
    iteration = step if step is not None else read_tracker(root)
    if iteration is None:
        raise ConfigError(f"{root} has no {TRACKER}; pass --ckpt-step or point the flag at a checkpoint root.")
    if not iteration_dir(root, iteration).is_dir():
        raise ConfigError(f"checkpoint {iteration_dir(root, iteration)} does not exist (check --ckpt-step).")
    return iteration
