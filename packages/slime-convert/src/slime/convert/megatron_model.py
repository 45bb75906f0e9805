"""This rank's Megatron GPTModel for a conversion: weights only, built through slime.megatron's mbridge adapter.

`build_weights_stack` resolves the Megatron flags against the HF config and builds the model exactly as the
trainer does (`slime.megatron.model.build_bridge`, local layer spec without TransformerEngine), places it on this
rank's device, but wraps it in nothing and gives it no optimizer: a conversion needs no gradient buffers. The
returned `WeightsStack` has the attributes `slime.megatron.checkpoint` and `slime.megatron.export` read
(`modules`, `optimizer`, `bridge`). `conversion_namespace` sets the parameter dtype to the one the weights are
stored in, so no conversion rounds. The world must be started (`megatron_world.start`).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

_DTYPE_FLAGS = {torch.bfloat16: (True, False), torch.float16: (False, True), torch.float32: (False, False)}


@dataclasses.dataclass(kw_only=True, slots=True)
class WeightsStack:
    """A model without optimizer, shaped like `slime.megatron.model.ModelStack` where checkpoints look."""

    bridge: Any
    """The `slime.megatron.bridge.ModelBridge` the model was built with."""
    modules: list[torch.nn.Module]
    """This rank's GPTModel (one pipeline chunk)."""
    args: argparse.Namespace
    """The resolved Megatron namespace."""
    optimizer: None = None
    scheduler: None = None


def conversion_namespace(ns: argparse.Namespace, stored_dtype: torch.dtype) -> argparse.Namespace:
    """A copy of `ns` whose parameter dtype is `stored_dtype`, unless --bf16/--fp16 was given explicitly."""
    out = argparse.Namespace(**vars(ns))
    explicit = getattr(ns, "explicit", frozenset())
    if "bf16" not in explicit and "fp16" not in explicit:
        out.bf16, out.fp16 = _DTYPE_FLAGS.get(stored_dtype, (False, False))
    return out


def build_weights_stack(ns: argparse.Namespace, hf_config: Any) -> WeightsStack:
    """This rank's model for `hf_config` and the Megatron flags in `ns` (raises `ConfigError` on contradictions)."""
    from megatron.core import parallel_state as mpu
    from megatron.core import tensor_parallel

    from slime.convert.megatron_world import device
    from slime.megatron.model import build_bridge

    bridge, resolved = build_bridge(ns, hf_config)
    module = bridge.build(pre_process=mpu.is_pipeline_first_stage(), post_process=mpu.is_pipeline_last_stage())
    for param in module.parameters():
        tensor_parallel.set_defaults_if_not_set_tensor_model_parallel_attributes(param)
    module.to(device())
    return WeightsStack(bridge=bridge, modules=[module], args=resolved)
