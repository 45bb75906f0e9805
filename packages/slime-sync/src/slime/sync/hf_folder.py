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

NamedTensor = tuple[str, Tensor]
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


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
        if item.is_file() and item.name != "config.json" and not item.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(item, dst / item.name)


def _write_shards(weights: Iterator[NamedTensor], out: Path, shard_bytes: int, write: bool) -> None:
    """Group tensors into safetensors files of about `shard_bytes` (host copies; non-writers just drain)."""
    from safetensors.torch import save_file

    names: list[list[str]] = []
    current: dict[str, Tensor] = {}
    size = total = 0

    def flush() -> None:
        if current:
            names.append(list(current))
            if write:
                save_file(current, str(out / f"shard-{len(names):05d}.tmp"), {"format": "pt"})
            current.clear()

    for name, tensor in weights:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > shard_bytes:
            flush()
            size = 0
        if write:
            current[name] = tensor.to("cpu", copy=True).contiguous()
        else:
            current[name] = torch.empty(0)
        size += nbytes
        total += nbytes
    flush()
    if write:
        _name_shards(out, names, total)


def _name_shards(out: Path, names: list[list[str]], total_bytes: int) -> None:
    count = len(names)
    if count == 1:
        os.rename(out / "shard-00001.tmp", out / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(names, start=1):
        final = f"model-{i:05d}-of-{count:05d}.safetensors"
        os.rename(out / f"shard-{i:05d}.tmp", out / final)
        weight_map |= {name: final for name in shard}
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True))


def write_hf_folder(
    weights: Iterator[NamedTensor],
    out_dir: str | Path,
    *,
    hf_checkpoint: str | Path,
    dtype: torch.dtype,
    is_writer: bool,
    shard_bytes: int = 5 * 1024**3,
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
