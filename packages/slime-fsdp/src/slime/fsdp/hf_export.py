"""Full weights in HF names from FSDP2 shards: bucketed export for weight sync, and an HF folder on disk.

`iter_hf_weights` gathers one parameter at a time (`DTensor.full_tensor()`, a collective) and yields a
bucket's worth once it holds `bucket_bytes`, so no rank ever holds more than one bucket of full tensors.
With LoRA it yields the merged weight `W + scale * B @ A` under the base layer's HF name and never the
adapters. Every rank must consume the iterator to the end (the gathers are collective). The HF folder itself
is written by `slime.sync.hf_folder.write_hf_folder` (shared with slime.megatron). It does not know any engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from slime.fsdp.model import reshard
from slime.sync.hf_folder import write_hf_folder

NamedTensor = tuple[str, Tensor]
_PEFT_PREFIX = "base_model.model."


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


__all__ = ["NamedTensor", "export_plan", "hf_name", "iter_hf_weights", "write_hf_folder"]
