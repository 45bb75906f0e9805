"""`write_hf_folder`: an HF checkpoint folder (safetensors shards + index, config, tokenizer files) from HF-named
tensors, written atomically.

Both trainers export through it (`slime.fsdp` for `--save-hf`, `slime.megatron` the same); it consumes any
iterator of `(hf_name, tensor)` holding at most one shard of host copies at a time. The config is the source
folder's `config.json` with its dtype set to the exported one and no `quantization_config` (plain JSON: no
transformers import here); every
other non-weight file of the source folder (tokenizer, chat template, generation config) is copied. It does
not convert names or layouts: the tensors must already be in HF naming.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from slime.sync.shard_writer import DEFAULT_SHARD_BYTES, ShardWriter

NamedTensor = tuple[str, Tensor]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")
"""Files that hold (or index) weights; everything else in an HF folder is an asset (tokenizer, templates...)."""


def _write_config(src: Path, dst: Path, dtype: torch.dtype) -> None:
    """`config.json` of `src` with the exported dtype (transformers 5 reads `dtype`; older ones `torch_dtype`)."""
    config = json.loads((src / "config.json").read_text())
    # The tensors written here are plain (never FP8-quantized), even when the source folder is the FP8 rollout copy.
    config.pop("quantization_config", None)
    name = str(dtype).removeprefix("torch.")
    config["dtype"] = name
    if "torch_dtype" in config:
        config["torch_dtype"] = name
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _copy_assets(src: Path, dst: Path) -> None:
    """Tokenizer, chat template, generation config: every file of the HF folder except weights and config."""
    for item in src.iterdir():
        if item.is_file() and item.name != "config.json" and not item.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(item, dst / item.name)


def _write_shards(weights: Iterator[NamedTensor], out: Path, shard_bytes: int, write: bool) -> None:
    """Group tensors into safetensors files of about `shard_bytes` (host copies; non-writers just drain)."""
    if not write:
        for _ in weights:  # the export is collective: every rank walks it
            pass
        return
    writer = ShardWriter(out, shard_bytes=shard_bytes)
    for name, tensor in weights:
        writer.add(name, tensor)
    writer.finish()


def write_hf_folder(
    weights: Iterator[NamedTensor],
    out_dir: str | Path,
    *,
    hf_checkpoint: str | Path,
    dtype: torch.dtype,
    is_writer: bool,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    """Write an HF checkpoint folder from `weights` (every rank consumes them; only `is_writer` writes).

    The folder appears atomically: it is built as `<out_dir>.tmp` and renamed, replacing an older one.
    """
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if is_writer:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _write_shards(weights, tmp, shard_bytes, is_writer)
    if not is_writer:
        return out
    _write_config(Path(hf_checkpoint), tmp, dtype)
    _copy_assets(Path(hf_checkpoint), tmp)
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out
