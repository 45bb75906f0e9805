"""Full weights in HF names from FSDP2 shards: bucketed export for weight sync, and an HF folder on disk.

`iter_hf_weights` gathers one parameter at a time (`DTensor.full_tensor()`, a collective) and yields a
bucket's worth once it holds `bucket_bytes`, so no rank ever holds more than one bucket of full tensors.
With LoRA it yields the merged weight `W + scale * B @ A` under the base layer's HF name and never the
adapters. Every rank must consume the iterator to the end (the gathers are collective). `write_hf_folder`
writes safetensors shards + index + config + tokenizer atomically. It does not know any engine.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from slime.fsdp.model import reshard

NamedTensor = tuple[str, Tensor]
_PEFT_PREFIX = "base_model.model."
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


def _full(param: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """The unsharded tensor, never aliasing the parameter (cast before gathering: half the traffic for bf16)."""
    local = param.detach()
    if dtype is not None:
        local = local.to(dtype)
    full = local.full_tensor() if isinstance(local, DTensor) else local
    shard = param.to_local() if isinstance(param, DTensor) else param
    if full.untyped_storage().data_ptr() == shard.untyped_storage().data_ptr():  # one rank, same dtype
        full = full.clone()
    return full


def hf_name(name: str) -> str:
    """A parameter name of the (peft-wrapped) model in HF checkpoint naming."""
    name = name.removeprefix(_PEFT_PREFIX)
    return name.replace(".base_layer.", ".")


def _merged(module: nn.Module, base: Tensor, dtype: torch.dtype) -> Tensor:
    weight = _full(base, torch.float32)
    for adapter in module.active_adapters:  # type: ignore[attr-defined]  # a peft LoraLayer
        if adapter not in module.lora_A:  # type: ignore[operator]
            continue
        a = _full(module.lora_A[adapter].weight, torch.float32)  # type: ignore[index]
        b = _full(module.lora_B[adapter].weight, torch.float32)  # type: ignore[index]
        weight = weight + (b @ a) * module.scaling[adapter]  # type: ignore[index]
    return weight.to(dtype)


def export_plan(model: nn.Module, dtype: torch.dtype) -> list[tuple[str, Callable[[], Tensor]]]:
    """(HF name, gather function) for every exported weight, in the model's parameter order."""
    reshard(model)
    lora_owners = {
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and hasattr(module, "base_layer")
    }
    plan: list[tuple[str, Callable[[], Tensor]]] = []
    for name, param in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name or ".lora_embedding_" in name:
            continue
        owner = name.rpartition(".base_layer.")[0]
        if owner in lora_owners and name.endswith(".base_layer.weight"):
            module = lora_owners[owner]
            plan.append((hf_name(name), lambda m=module, p=param: _merged(m, p, dtype)))
        else:
            plan.append((hf_name(name), lambda p=param: _full(p, dtype)))
    return plan


def iter_hf_weights(model: nn.Module, *, bucket_bytes: int, dtype: torch.dtype) -> Iterator[NamedTensor]:
    """Yield `(hf_name, full tensor)`, gathering a bucket of about `bucket_bytes` at a time (collective).

    Each tensor is a fresh copy (it never aliases a parameter), so a consumer may keep or modify it.
    """
    bucket: list[NamedTensor] = []
    size = 0
    for name, gather in export_plan(model, dtype):
        tensor = gather()
        bucket.append((name, tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= bucket_bytes:
            yield from bucket
            bucket, size = [], 0
    yield from bucket


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
    from transformers import AutoConfig

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if is_writer:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _write_shards(weights, tmp, shard_bytes, is_writer)
    if not is_writer:
        return out
    config = AutoConfig.from_pretrained(hf_checkpoint)
    config.dtype = dtype
    config.save_pretrained(tmp)
    _copy_assets(Path(hf_checkpoint), tmp)
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out
