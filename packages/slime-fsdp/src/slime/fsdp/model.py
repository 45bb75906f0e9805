"""Build the trainable model: a transformers causal LM, optional peft LoRA, sharded with FSDP2 `fully_shard`.

Every decoder layer is one FSDP unit and the root (embeddings, final norm, LM head) another. Master
weights are float32; on CUDA the forward/backward run in `param_dtype` (bf16 by default) with float32
gradient reduction. Gradients are SUMMED over ranks (not averaged), because slime.loss already divides
each micro-batch's loss by the step's global denominators. It loads weights from an HF folder only; DCP
checkpoints are `slime.fsdp.checkpoint`'s job.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from slime.fsdp.config import FSDPConfig
from slime.fsdp.packed_attention import register_packed_attention

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(config: FSDPConfig, device: torch.device) -> torch.dtype:
    """The forward/backward dtype: `param_dtype`, or bf16 on CUDA and float32 on CPU for `auto`."""
    if config.param_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[config.param_dtype]


def load_hf_model(path: str) -> nn.Module:
    """The causal LM of an HF folder in float32 on CPU, with packed attention."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation=register_packed_attention()
    )


def _apply_lora(model: nn.Module, config: FSDPConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets: Any = config.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=targets, lora_dropout=0.0, bias="none"
    )
    return get_peft_model(model, lora)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The modules transformers marks as not-to-be-split (the decoder layers), in model order."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def build_model(config: FSDPConfig, mesh: DeviceMesh, device: torch.device) -> nn.Module:
    """Load `config.hf_checkpoint`, add LoRA when `lora_rank > 0`, and shard it over `mesh`.

    Seeds torch with `config.seed` first, so LoRA's random init is the same on every rank.
    """
    torch.manual_seed(config.seed)
    model = load_hf_model(config.hf_checkpoint)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora_rank > 0:
        model = _apply_lora(model, config)
    return shard_model(model, config, mesh, device)


def shard_model(model: nn.Module, config: FSDPConfig, mesh: DeviceMesh, device: torch.device) -> nn.Module:
    """`fully_shard` every decoder layer, then the root; gradients are summed over ranks. Returns `model`."""
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype(config, device), reduce_dtype=torch.float32)
    # One rank holds every shard anyway: keeping the gathered layer for backward saves a second gather.
    reshard_after_forward = mesh.size() > 1
    for layer in decoder_layers(model):
        if config.compile:
            layer.compile()  # before sharding, so FSDP's hooks stay outside the compiled graph
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            # Sum, never average: the loss already carries the global denominators.
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def reshard(model: nn.Module) -> None:
    """Free every unsharded parameter, so `named_parameters()` yields the float32 sharded DTensors again.

    FSDP2 keeps the root unit's parameters gathered after a forward without backward (log-prob passes);
    code that reads or writes parameters directly must call this first.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimizer updates (all of them, or only the LoRA adapters)."""
    return [p for p in model.parameters() if p.requires_grad]
