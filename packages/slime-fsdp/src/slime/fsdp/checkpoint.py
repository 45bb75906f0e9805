"""Atomic DCP checkpoints of models + optimizers (sharded) plus per-rank scheduler / RNG / counters.

A checkpoint holds named parts, each a (model, optimizer) pair: `actor` (DCP keys `model`, `optim`) and, for
PPO, `critic` (`critic_model`, `critic_optim`); `meta.json` lists them, and a load restores only the parts
both the checkpoint and the caller have. Layout (slime's): `<save>/iter_0000012/` holds the DCP files, one
`extra_state_rank{r}.pt` per rank and `meta.json`; `<save>/latest_checkpointed_iteration.txt` names the
newest. A save is written into `<save>/.tmp_iter_0000012/` and renamed into place by rank 0 only after
every rank finished, and the tracker is replaced atomically after that, so a crash at any point leaves
the previous checkpoint loadable. DCP reshards on load, so a different world size can resume (the RNG of
rank r then comes from rank r mod old world size). It does not export HF weights (`slime.fsdp.hf_export`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from slime.fsdp.model import reshard
from slime.types import DataError

TRACKER = "latest_checkpointed_iteration.txt"
FORMAT = "slime.fsdp/1"

Part = tuple[nn.Module, torch.optim.Optimizer]
"""A model and its optimizer, saved and loaded together."""


def _keys(part: str) -> tuple[str, str]:
    """DCP keys of a part's model and optimizer state (the actor keeps the original `model` / `optim`)."""
    prefix = "" if part == "actor" else f"{part}_"
    return f"{prefix}model", f"{prefix}optim"


def _state(parts: Mapping[str, Part]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, (model, optimizer) in parts.items():
        reshard(model)
        model_key, optim_key = _keys(name)
        state[model_key], state[optim_key] = get_state_dict(model, optimizer)
    return state


def iteration_dir(root: str | Path, rollout_id: int) -> Path:
    """`<root>/iter_<rollout_id:07d>`, slime's folder name."""
    return Path(root) / f"iter_{rollout_id:07d}"


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def rng_state() -> dict[str, Any]:
    """This process's torch / CUDA / Python RNG states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _publish(tmp: Path, final: Path, meta: dict[str, Any]) -> None:
    """Rank 0: move the finished folder into place, then point the tracker at it."""
    _write_text_atomic(tmp / "meta.json", json.dumps({"format": FORMAT, **meta}))
    if final.exists():  # re-saving the same rollout: keep the old one until the new one is in place
        stale = final.with_name(final.name + ".old")
        shutil.rmtree(stale, ignore_errors=True)
        os.rename(final, stale)
        os.rename(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _write_text_atomic(final.parent / TRACKER, f"{meta['rollout_id']}\n")


def save(root: str | Path, rollout_id: int, parts: Mapping[str, Part], extra: dict[str, Any]) -> Path:
    """Write the checkpoint of `rollout_id` under `root` (collective: every rank calls it) and return its folder."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    final = iteration_dir(root, rollout_id)
    tmp = final.with_name(f".tmp_{final.name}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed save
        tmp.mkdir(parents=True)
    _barrier()
    dcp.save(_state(parts), checkpoint_id=str(tmp))
    torch.save({**extra, "rng": rng_state()}, tmp / f"extra_state_rank{rank}.pt")
    _barrier()
    if rank == 0:
        _publish(tmp, final, {"rollout_id": rollout_id, "world_size": world, "parts": sorted(parts)})
    _barrier()
    return final


def resolve(path: str | Path) -> Path | None:
    """The iteration folder `path` names: a root with a tracker, or an `iter_*` folder; None when it has neither."""
    path = Path(path)
    if (path / TRACKER).is_file():
        text = (path / TRACKER).read_text().strip()
        if not text.isdigit():
            raise DataError(f"{path / TRACKER}: expected a rollout id, found {text!r}.")
        path = iteration_dir(path, int(text))
    for candidate in (path, path.with_name(path.name + ".old")):  # `.old`: a re-save of this id was cut short
        if (candidate / "meta.json").is_file():
            return candidate
    return None


def load(path: str | Path, parts: Mapping[str, Part]) -> dict[str, Any]:
    """Load the parts of `parts` that `path` (root or iteration folder) holds; return this rank's extra state.

    The returned dict also has `parts`: the names that were loaded (the others keep their current state).

    Raises:
        DataError: `path` holds no complete checkpoint, or no `actor` part.
    """
    folder = resolve(path)
    if folder is None:
        raise DataError(f"{path}: no checkpoint (neither {TRACKER} nor meta.json); pass a folder written by save().")
    meta = json.loads((folder / "meta.json").read_text())
    present = {name: part for name, part in parts.items() if name in meta.get("parts", ["actor"])}
    if "actor" not in present:
        raise DataError(f"{folder}: no actor in the checkpoint (parts {meta.get('parts')}).")
    state = _state(present)
    dcp.load(state, checkpoint_id=str(folder))
    for name, (model, optimizer) in present.items():
        model_key, optim_key = _keys(name)
        set_state_dict(model, optimizer, model_state_dict=state[model_key], optim_state_dict=state[optim_key])
    rank = dist.get_rank() if dist.is_initialized() else 0
    extra = torch.load(folder / f"extra_state_rank{rank % int(meta['world_size'])}.pt", weights_only=False)
    set_rng_state(extra.pop("rng"))
    return {**extra, "parts": sorted(present)}
