"""`slime-convert check`: every validation the converters run, without converting or writing anything.

It checks an HF folder's weights against its config (names, shapes, vocabulary, tied embeddings, head
counts), Megatron shape flags against that config, and, with `--input-dir`, a torch_dist or slime.fsdp DCP
checkpoint against it. It returns one summary line per check; a failure raises the converters' `ConfigError`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slime.convert.hf_checkpoint import HFCheckpoint
from slime.convert.model_layout import ModelLayout
from slime.convert.shape_check import check_shapes
from slime.megatron import resolve_model_shape


def _check_dcp(path: Path, hf: HFCheckpoint) -> str:
    from slime.convert.dcp_to_hf import expected_shapes, open_fsdp_checkpoint, weight_plan

    folder = open_fsdp_checkpoint(path)
    plan = weight_plan(folder, tied=ModelLayout.from_hf_config(hf.config).tied_embeddings)
    found = {name: folder.tensor_infos()[key][0] for name, (key, _, _) in plan.items()}
    check_shapes(found, expected_shapes(hf), checkpoint=str(folder.path), config=str(hf.path / "config.json"))
    return f"slime.fsdp checkpoint {folder.path}: {len(found)} weights match the config"


def _check_torch_dist(path: Path, layout: ModelLayout, hf: HFCheckpoint) -> str:
    from slime.convert.dcp_folder import DcpFolder
    from slime.convert.torch_dist_to_hf import check_torch_dist, resolve_iteration_folder

    folder = DcpFolder(resolve_iteration_folder(path))
    padded = check_torch_dist(folder, layout, config=str(hf.path / "config.json"))
    return f"torch_dist checkpoint {folder.path}: matches the config (vocabulary {layout.vocab_size}, padded {padded})"


def _is_fsdp_checkpoint(path: Path) -> bool:
    from slime.fsdp.checkpoint import resolve
    from slime.types import DataError

    try:
        return resolve(path) is not None
    except DataError:  # a tracker naming `release`: Megatron's, not slime.fsdp's
        return False


def run_check(hf_checkpoint: str, input_dir: str | None, megatron_args: argparse.Namespace | None) -> list[str]:
    """Run the checks; returns what passed, one line each."""
    from slime.convert.hf_to_torch_dist import validate_hf

    hf = HFCheckpoint(hf_checkpoint)
    layout = validate_hf(hf)
    lines = [f"HF checkpoint {hf.path}: {len(layout.hf_shapes())} tensors match config.json ({layout.family})"]
    if megatron_args is not None and getattr(megatron_args, "explicit", None):
        resolve_model_shape(megatron_args, hf.config)
        lines.append(f"Megatron flags agree with config.json: {', '.join(sorted(megatron_args.explicit))}")
    if input_dir is not None:
        path = Path(input_dir)
        lines.append(_check_dcp(path, hf) if _is_fsdp_checkpoint(path) else _check_torch_dist(path, layout, hf))
    return lines
