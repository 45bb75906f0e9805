"""Run-level checkpoint state: which rollout comes next and the data source (cursor + partial buffer).

Written next to the trainer's checkpoint as `<save>/rollout/state_<rollout_id>.json` and published by
atomically replacing `<save>/latest_rollout_state.txt` last, so a crash mid-save leaves the previous
state loadable. The trainer's own weights/optimizer are saved by the trainer (slime.fsdp / slime.megatron);
this module never touches them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from slime.types import ConfigError

LATEST = "latest_rollout_state.txt"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_run_state(save_dir: str | os.PathLike[str], rollout_id: int, state: dict[str, Any]) -> Path:
    """Write the state of the run after `rollout_id` finished; the latest pointer moves last."""
    root = Path(save_dir)
    path = root / "rollout" / f"state_{rollout_id}.json"
    _atomic_write(path, json.dumps({"rollout_id": rollout_id, **state}, sort_keys=True))
    _atomic_write(root / LATEST, f"{rollout_id}\n")
    return path


def latest_rollout_id(load_dir: str | os.PathLike[str]) -> int | None:
    """The last completed rollout id recorded under `load_dir`, or None when nothing was saved there."""
    pointer = Path(load_dir) / LATEST
    if not pointer.exists():
        return None
    text = pointer.read_text().strip()
    if not text.isdigit():
        raise ConfigError(f"{pointer} holds {text!r}, not a rollout id; the checkpoint directory is damaged.")
    return int(text)


def load_run_state(load_dir: str | os.PathLike[str], rollout_id: int | None = None) -> dict[str, Any] | None:
    """The saved state for `rollout_id` (default: the latest), or None when there is none."""
    rid = latest_rollout_id(load_dir) if rollout_id is None else rollout_id
    if rid is None:
        return None
    path = Path(load_dir) / "rollout" / f"state_{rid}.json"
    if not path.exists():
        raise ConfigError(f"{path} is missing although {LATEST} points to rollout {rid}; restore it or drop --load.")
    return json.loads(path.read_text(encoding="utf-8"))
