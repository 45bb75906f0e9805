"""AdamW, Megatron's learning-rate schedule, gradient-norm clipping and optimizer-state resets.

`learning_rate(step, config)` is Megatron's `OptimizerParamScheduler` in optimizer steps: linear warmup
from `lr_warmup_init` to `lr` over `lr_warmup_iters` steps (step 0 runs at `lr_warmup_init`), then
constant, linear or cosine decay to `min_lr` at `lr_decay_iters`, and `min_lr` after it. The optimizer
works on FSDP2's sharded DTensor parameters directly. No data handling here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from slime.fsdp.config import FSDPConfig


def learning_rate(step: int, config: FSDPConfig) -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    warmup = config.lr_warmup_iters
    if warmup > 0 and step < warmup:
        return config.lr_warmup_init + (config.lr - config.lr_warmup_init) * step / warmup
    if config.lr_decay_style == "constant":
        return config.lr
    assert config.lr_decay_iters is not None  # FSDPConfig requires it for decaying styles
    if step >= config.lr_decay_iters:
        return config.min_lr
    ratio = (step - warmup) / (config.lr_decay_iters - warmup)
    if config.lr_decay_style == "linear":
        coeff = 1.0 - ratio
    else:
        coeff = 0.5 * (math.cos(math.pi * ratio) + 1.0)
    return config.min_lr + coeff * (config.lr - config.min_lr)


def build_optimizer(params: Iterable[nn.Parameter], config: FSDPConfig) -> torch.optim.AdamW:
    """AdamW with slime's `--adam-*` / `--weight-decay` flags; the LR is set per step by the scheduler.

    The fused kernel (CPU and CUDA, DTensor-aware) avoids one DTensor dispatch per elementwise op per
    parameter, which otherwise dominates the step of small models.
    """
    return torch.optim.AdamW(
        list(params),
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        fused=True,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, config: FSDPConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` following `learning_rate` (its state_dict is the step counter)."""
    if config.lr == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(step, config) / config.lr)


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of the gradients (over all shards) to `max_norm` (0: no clip); return the norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    norm = float(total.full_tensor() if isinstance(total, DTensor) else total)
    coef = max_norm / (norm + 1e-6)
    if max_norm > 0 and coef < 1.0:  # torch's rule; a Python float scales DTensor and plain grads alike
        for grad in grads:
            grad.mul_(coef)
    return norm


def reset_optimizer_states(optimizer: torch.optim.Optimizer) -> None:
    """Zero every AdamW `step`, `exp_avg` and `exp_avg_sq` in place (`--reset-optimizer-states`)."""
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                value.zero_()
