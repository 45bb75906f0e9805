"""Megatron torch_dist checkpoints: the `--save` / `--load` / `--ref-load` directory layout, save and load.

Layout (Megatron-LM's, as the seeds describe): `<root>/latest_checkpointed_iteration.txt` names the newest
iteration, whose files are in `<root>/iter_<7 digits>/` (`release` also accepted); `--ckpt-step` picks another.
A checkpoint holds the model, and unless disabled the optimizer, the LR scheduler and the RNG states.

Saves are atomic: each rank writes into `iter_N.tmp`, rank 0 renames it once every rank is done and only then
rewrites the tracker file (via a temporary file and `os.replace`). Checkpoint keys use TransformerEngine's
parameter names even when the local spec is in use (`bridge.LOCAL_TO_TE_NAMES`), so checkpoints move between
TE and non-TE machines and match those converted by slime's tools.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from megatron.core import dist_checkpointing, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject
from slime.megatron import _megatron_globals as mg
from slime.megatron.bridge import LOCAL_TO_TE_NAMES
from slime.megatron.checkpoint_layout import TRACKER, iteration_dir, resolve_iteration
from slime.megatron.torch_optimizers import inner_optimizers

_OPTIM_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}


def _te_keys(sharded: Any) -> Any:
    """Rename local-spec checkpoint keys to TE's, in place, through nested dicts/lists."""
    if isinstance(sharded, dict):
        for value in sharded.values():
            _te_keys(value)
    elif isinstance(sharded, list):
        for value in sharded:
            _te_keys(value)
    elif hasattr(sharded, "key") and isinstance(sharded.key, str):
        for local, te in LOCAL_TO_TE_NAMES.items():
            if sharded.key.endswith("." + local):
                sharded.key = sharded.key[: -len(local)] + te
    return sharded


def _model_sharded(stack) -> dict[str, Any]:
    sharded = {}
    for i, module in enumerate(stack.modules):
        key = "model" if len(stack.modules) == 1 else f"model{i}"
        sharded[key] = _te_keys(module.sharded_state_dict())
    return sharded


def _rng_state() -> ShardedObject:
    state = {
        "random": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    # One object per (PP, TP) position, replicated over DP; loading it needs the same PP x TP layout.
    shape = (mg.pp_size(), mg.tp_size())
    return ShardedObject("rng_state", state, shape, (mg.pp_rank(), mg.tp_rank()), replica_id=mg.dp_rank())


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["random"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _state_to_save(stack, iteration: int, *, save_optim: bool, save_rng: bool) -> dict[str, Any]:
    state: dict[str, Any] = {"iteration": iteration, "checkpoint_version": 3.0, **_model_sharded(stack)}
    if save_optim and stack.optimizer is not None:
        _prime_adam_states(stack.optimizer)
        state["optimizer"] = stack.optimizer.sharded_state_dict(state, metadata=_OPTIM_METADATA)
        state["opt_param_scheduler"] = stack.scheduler.state_dict()
    if save_rng:
        state["rng_state"] = _rng_state()
    return state


def save_torch_dist(
    stack, root: str | os.PathLike, iteration: int, *, save_optim: bool = True, save_rng: bool = True
) -> Path:
    """Write `<root>/iter_<iteration>` atomically and point the tracker at it (collective over all ranks)."""
    final = iteration_dir(root, iteration)
    tmp = final.with_name(final.name + ".tmp")
    if dist.get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = _state_to_save(stack, iteration, save_optim=save_optim, save_rng=save_rng)
    dist_checkpointing.save(state, str(tmp), content_metadata={"slime_optim": _OPTIM_METADATA})
    dist.barrier()
    if dist.get_rank() == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        tracker_tmp = Path(root) / (TRACKER + ".tmp")
        tracker_tmp.write_text(str(iteration))
        os.replace(tracker_tmp, Path(root) / TRACKER)
    dist.barrier()
    return final


def _prime_adam_states(optimizer) -> None:
    """Give a never-stepped optimizer the state a first step would create (zero moments, `step` 0).

    megatron-core 0.16.1 without Apex/TE reads `step` from every parameter's torch-Adam state when it builds the
    optimizer's (sharded) state dict, and asserts there is exactly one value: before the first step there is none,
    so saving right after start-up, or resuming into a fresh optimizer, fails. Equivalent to torch's lazy init.
    """
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner, init = getattr(opt, "optimizer", None), getattr(opt, "init_state_fn", None)
        if inner is None or init is None:
            continue
        init(inner, getattr(opt, "config", None))
        for state in inner.state.values():
            if "exp_avg" in state and "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)


def _untie_adam_steps(optimizer) -> None:
    """Give every parameter its own Adam `step` tensor again, from the loaded param groups' step.

    megatron-core 0.16.1 without Apex/TE (torch's Adam) loads one shared `step` tensor into every parameter's
    state, which torch's Adam then increments once per parameter per step (and the dp_reshardable parameter-state
    load overwrites it): bias correction goes wrong after any resume. Seen on CPU; the same code path runs on
    GPUs without TE/Apex.
    """
    for inner in inner_optimizers(optimizer):
        for group in inner.param_groups:
            if "step" not in group:
                continue
            for param in group["params"]:
                state = inner.state.get(param)
                if state is not None and isinstance(state.get("step"), torch.Tensor):
                    state["step"] = torch.tensor(float(group["step"]), dtype=state["step"].dtype)


@torch.no_grad()  # the optimizer's fp32 shards may be views of parameters: in-place copies need no autograd
def load_torch_dist(
    stack, root: str | os.PathLike, *, step: int | None = None, load_optim: bool = True, load_rng: bool = True
) -> int | str:
    """Load `root`'s checkpoint (the tracker's iteration, or `step`) into `stack`; returns the iteration.

    With `load_optim=False` (finetune, `--no-load-optim`, the reference model) only the weights are read and the
    optimizer's main parameters are re-copied from them.
    """
    iteration = resolve_iteration(root, step)
    directory = str(iteration_dir(root, iteration))
    state: dict[str, Any] = dict(_model_sharded(stack))
    if load_optim and stack.optimizer is not None:
        _prime_adam_states(stack.optimizer)
        state["optimizer"] = stack.optimizer.sharded_state_dict(state, is_loading=True, metadata=_OPTIM_METADATA)
    if load_rng:
        state["rng_state"] = _rng_state()
    loaded = dist_checkpointing.load(state, directory)
    for i, module in enumerate(stack.modules):
        module.load_state_dict(loaded["model" if len(stack.modules) == 1 else f"model{i}"], strict=True)
    if load_optim and stack.optimizer is not None:
        stack.optimizer.load_state_dict(loaded["optimizer"])
        _untie_adam_steps(stack.optimizer)
        common = dist_checkpointing.load_common_state_dict(directory)
        if "opt_param_scheduler" in common:
            stack.scheduler.load_state_dict(common["opt_param_scheduler"])
    elif stack.optimizer is not None:
        stack.optimizer.reload_model_params()
    if load_rng:
        _set_rng_state(loaded["rng_state"])
    return iteration
