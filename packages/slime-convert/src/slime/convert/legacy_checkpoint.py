"""Megatron-LM's `--ckpt-format torch` checkpoints: one `model_optim_rng.pt` per (TP, PP, EP) rank, loaded as is.

Layout: `<load>/iter_XXXXXXX/mp_rank_<tp:02d>[_<pp:03d>][_<ep:03d>]/model_optim_rng.pt` (the PP part only
with PP > 1, the EP part only with EP > 1), holding this rank's shard under `"model"`. It is only loadable with
the TP/PP/EP layout it was saved with. Keys saved by a TransformerEngine model (`linear_qkv.layer_norm_weight`)
are renamed to the local spec's when the model here has those (`slime.megatron.bridge.LOCAL_TO_TE_NAMES`), and TE
`_extra_state` entries the model lacks are dropped. Any other difference is a `DataError` naming the tensors.
It reads; it writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slime.megatron.checkpoint_layout import iteration_dir, resolve_iteration
from slime.types import DataError

FILE = "model_optim_rng.pt"


def rank_file(root: str | Path, iteration: int | str) -> Path:
    """This rank's file in the iteration folder (Megatron's parallel groups must exist)."""
    from megatron.core import parallel_state as mpu

    name = f"mp_rank_{mpu.get_tensor_model_parallel_rank():02d}"
    if mpu.get_pipeline_model_parallel_world_size() > 1:
        name += f"_{mpu.get_pipeline_model_parallel_rank():03d}"
    if mpu.get_expert_model_parallel_world_size() > 1:
        name += f"_{mpu.get_expert_model_parallel_rank():03d}"
    return iteration_dir(root, iteration) / name / FILE


def _renamed(saved: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from slime.megatron.bridge import LOCAL_TO_TE_NAMES

    out = {}
    for key, value in saved.items():
        if key not in own:
            for local, te in LOCAL_TO_TE_NAMES.items():
                if key.endswith("." + te) and key[: -len(te)] + local in own:
                    key = key[: -len(te)] + local
        if "_extra_state" in key and key not in own:
            continue
        out[key] = value
    return out


def _problems(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> list[str]:
    problems = [f"{k!r} missing" for k in own if k not in state and "_extra_state" not in k]
    problems += [f"{k!r} unexpected" for k in state if k not in own]
    problems += [
        f"{k!r}: file has shape {tuple(v.shape)}, model has {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    return problems


def load_legacy(stack, root: str | Path, step: int | None) -> int | str:
    """Load this rank's shard of `root`'s checkpoint (tracker's iteration, or `step`) into `stack.modules[0]`."""
    iteration = resolve_iteration(root, step)
    path = rank_file(root, iteration)
    if not path.is_file():
        raise DataError(f"{path} does not exist: is --load a `--ckpt-format torch` checkpoint saved with this TP/PP?")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if "model" not in saved:
        raise DataError(f"{path} has no 'model' entry (keys: {sorted(saved)}); virtual pipelines are not supported.")
    module = stack.modules[0]
    own = module.state_dict()
    state = _renamed(saved["model"], own)
    problems = _problems(state, own)
    if problems:
        detail = "; ".join(problems[:8])
        raise DataError(f"{path} does not fit the model built from the flags and --hf-checkpoint: {detail}")
    module.load_state_dict(state, strict=False)
    return iteration


def stored_dtype(root: str | Path, step: int | None) -> torch.dtype:
    """The dtype of the first floating-point weight in rank 0's file (the model is built in it)."""
    iteration = resolve_iteration(root, step)
    files = sorted(iteration_dir(root, iteration).glob(f"mp_rank_*/{FILE}"))
    if not files:
        raise DataError(f"{iteration_dir(root, iteration)} holds no mp_rank_*/{FILE}; is it a torch-format checkpoint?")
    # mmap: only the header and the first tensor's pages are read, not the whole shard.
    model = torch.load(files[0], map_location="cpu", weights_only=False, mmap=True).get("model", {})
    for value in model.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype
    return torch.float32
