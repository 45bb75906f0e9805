"""Build the trainable Megatron model stack: GPTModel(s) through `ModelBridge`, DDP, optimizer, LR scheduler.

`build_model_stack` is the single place where a model is placed on its device (CPU or this rank's GPU), wrapped
in Megatron's `DistributedDataParallel` (contiguous fp32 grad buffers) and given Megatron's optimizer (the
distributed optimizer by default) and `OptimizerParamScheduler`. It does not load weights (`checkpoint`,
`ModelBridge.load_hf_weights`) and does not run anything.

No `Float16Module`: parameters are created in the training dtype directly, so the output logits stay bf16 and
are never up-cast to fp32 for the whole micro-batch (the vocab-parallel log-prob does that chunk by chunk).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from megatron.core import tensor_parallel
from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
from megatron.core.optimizer import get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from slime.megatron import _megatron_globals as mg
from slime.megatron import training_configs
from slime.megatron.bridge import ModelBridge
from slime.megatron.model_shape import resolve_model_shape, text_config
from slime.megatron.torch_optimizers import use_fused_adam


@dataclasses.dataclass(kw_only=True, slots=True)
class ModelStack:
    """One trainable model (actor or critic) and everything that updates it."""

    bridge: ModelBridge
    models: list[DistributedDataParallel]
    """One DDP-wrapped GPTModel per (virtual) pipeline chunk of this rank."""
    optimizer: Any | None
    scheduler: OptimizerParamScheduler | None
    args: argparse.Namespace
    """The resolved Megatron namespace the stack was built from."""

    @property
    def modules(self) -> list[torch.nn.Module]:
        """The unwrapped GPTModels (what mbridge and checkpoints see)."""
        return [m.module for m in self.models]

    @property
    def config(self):
        """The shared Megatron `TransformerConfig`."""
        return self.bridge.config


def build_bridge(
    ns: argparse.Namespace, hf_config: Any, *, fused_elementwise: bool = False
) -> tuple[ModelBridge, argparse.Namespace]:
    """Resolve the shape against `hf_config` and build the mbridge adapter (parallel state must exist);
    `fused_elementwise`: see `training_configs.transformer_overrides`."""
    resolved = resolve_model_shape(ns, hf_config)
    use_te = None if resolved.transformer_impl == "transformer_engine" else False
    divisor = resolved.make_vocab_size_divisible_by * resolved.tensor_model_parallel_size
    bridge = ModelBridge(
        text_config(hf_config),
        dtype=training_configs.params_dtype(resolved),
        transformer_overrides=training_configs.transformer_overrides(
            resolved, on_cpu=mg.device().type == "cpu", fused_elementwise=fused_elementwise
        ),
        make_vocab_size_divisible_by=divisor,
        use_transformer_engine=use_te,
        wgrad_fusion=resolved.gradient_accumulation_fusion,
    )
    return bridge, resolved


def build_model_stack(
    ns: argparse.Namespace,
    hf_config: Any,
    *,
    with_optimizer: bool = True,
    post_build: Callable[[torch.nn.Module], None] | None = None,
    fused_elementwise: bool = False,
) -> ModelStack:
    """Build, place and wrap the model for this rank; `post_build` may swap heads before wrapping (critic);
    `fused_elementwise`: see `training_configs.transformer_overrides`."""
    bridge, resolved = build_bridge(ns, hf_config, fused_elementwise=fused_elementwise)
    module = bridge.build(pre_process=mg.is_first_stage(), post_process=mg.is_last_stage())
    if post_build is not None:
        post_build(module)
    for param in module.parameters():
        tensor_parallel.set_defaults_if_not_set_tensor_model_parallel_attributes(param)
    module.to(mg.device())
    config = bridge.config
    ddp = DistributedDataParallel(config=config, ddp_config=training_configs.ddp_config(resolved), module=module)
    ddp.broadcast_params()  # identical DP replicas even if initialisation drew different numbers
    optimizer = scheduler = None
    if with_optimizer:
        optimizer = get_megatron_optimizer(training_configs.optimizer_config(resolved), [ddp])
        use_fused_adam(optimizer)
        scheduler = OptimizerParamScheduler(optimizer, **training_configs.scheduler_kwargs(resolved))
        _wire_schedule_hooks(config, ddp, optimizer)
    return ModelStack(bridge=bridge, models=[ddp], optimizer=optimizer, scheduler=scheduler, args=resolved)


def _wire_schedule_hooks(config, ddp: DistributedDataParallel, optimizer) -> None:
    # Megatron's schedules call these. The loss is pre-normalised (slime.loss global denominators), so gradient
    # finalisation must not divide by the token count the schedule accumulates: pass None instead.
    def finalize(models, num_tokens=None, pg_collection=None, force_all_reduce=False):
        finalize_model_grads(models, None, pg_collection=pg_collection, force_all_reduce=force_all_reduce)

    config.finalize_model_grads_func = finalize
    config.no_sync_func = ddp.no_sync
    config.grad_scale_func = optimizer.scale_loss
