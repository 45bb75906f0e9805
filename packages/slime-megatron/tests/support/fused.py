"""Scenario: Megatron's compiled SwiGLU and bias-dropout-add fusions, with the local spec's compiled RMSNorm and
packed RoPE (`slime.megatron.fused_elementwise`, on with them; run inside its static region as under CUDA graphs),
train exactly like the eager layers.

On accelerators next to TransformerEngine `transformer_overrides` turns them on (Megatron's defaults); the CPU and
the local spec keep them off, so this world forces them on (through the module attribute `slime.megatron.model`
calls) to run Megatron's `torch.compile`'d kernels through inductor's CPU backend, on the packed micro-batches, the
packed RoPE and the varlen attention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def fused_elementwise(*, out_dir: Path, model_dir: str) -> dict[str, Any]:
    """One optimizer step eager, then one from the same weights with the fusions on: metrics and weights."""
    from batches import random_batch
    from scenarios import _check, _export, _policy

    from slime.loss import LossConfig
    from slime.megatron import _megatron_globals, training_configs

    original = training_configs.transformer_overrides
    batch = random_batch(8, seed=3)
    result: dict[str, Any] = {}
    for fused in (False, True):

        def overrides(ns, *, on_cpu: bool, fused_elementwise: bool = False, _fused: bool = fused) -> dict[str, Any]:
            base = original(ns, on_cpu=on_cpu, fused_elementwise=fused_elementwise)
            return {**base, "bias_activation_fusion": _fused, "bias_dropout_fusion": _fused}

        training_configs.transformer_overrides = overrides
        try:
            policy = _policy(model_dir, ["--lr", "1e-3", "--micro-batch-size", "3"], LossConfig(entropy_coef=0.01))
        finally:
            training_configs.transformer_overrides = original
        config = policy.stack.modules[0].config
        key = "fused" if fused else "eager"
        _check(result, f"{key}_config", lambda c=config: (c.bias_activation_fusion, c.bias_dropout_fusion))
        _check(result, f"{key}_norms", lambda p=policy: sorted({type(m).__name__ for m in p.stack.modules[0].modules()
                                                                  if isinstance(m, torch.nn.RMSNorm)}))  # fmt: skip
        _check(result, f"{key}_step", lambda p=policy: _train_step(p, batch))
        _check(result, f"{key}_weights", lambda p=policy: _export(p))
        _megatron_globals.reset_model_parallel()
    return result


def _train_step(policy, batch) -> dict[str, Any]:
    """One step inside `static_region()`, so the compiled RMSNorm and rotation run too (on the CPU through inductor's
    C++ backend); the CPU's varying micro-batch lengths recompile them, which the CUDA graphs' static shapes avoid."""
    from slime.megatron.fused_elementwise import static_region

    with static_region(), torch._dynamo.config.patch(recompile_limit=64):
        return dict(policy.train(0, batch))
