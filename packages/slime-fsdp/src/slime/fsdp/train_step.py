"""One optimizer step: forward/backward over this rank's micro-batches, clip, AdamW, LR schedule.

The actor's step uses slime.loss's policy loss (`compute_loss`), the critic's its clipped value loss
(`compute_value_loss`). Each micro-batch's loss is already divided by the step's GLOBAL denominators (loss-mask
tokens or samples of the whole step over all ranks), and FSDP sums gradients over ranks, so gradient
accumulation needs no rescaling and any micro-batch split or world size gives the same update. Metrics are
summed over micro-batches and ranks the same way. It does not plan micro-batches or compute advantages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule

from slime.fsdp.distributed import DistInfo, sum_over_ranks
from slime.fsdp.forward import forward_packed
from slime.fsdp.optimizer import clip_grad_norm
from slime.fsdp.packed_batch import PackedBatch
from slime.fsdp.rollout_data import RolloutTensors
from slime.fsdp.value_model import forward_values
from slime.loss import LossConfig, Reduction, compute_loss, compute_value_loss
from slime.loss.plugins import LossPlugins

Staged = dict[str, Tensor | None]
MicroBatchLoss = Callable[["StepContext", PackedBatch, Staged, tuple[float, float]], tuple[Tensor, dict[str, Tensor]]]

_ACTOR_INPUTS = ("advantages", "old_log_probs", "ref_log_probs", "rollout_log_probs", "opd_reverse_kl")
_CRITIC_INPUTS = ("values", "returns")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StepContext:
    """What every step of one `train()` call shares (for the actor, or for the critic)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[nn.Parameter]
    loss_config: LossConfig
    plugins: LossPlugins
    info: DistInfo
    temperature: float
    chunk_size: int | None
    clip_grad: float
    reuse_current_as_old: bool
    """slime's fast path: a single step with no use for old log-probs before it, so old = current (detached)."""


def _stage_inputs(
    mb: PackedBatch, data: RolloutTensors, names: Sequence[str], denominators: Sequence[float], device: torch.device
) -> Staged:
    """This micro-batch's per-token loss inputs on the device (copied before the loop: no drain mid-step)."""
    if mb.is_empty:
        return {}
    denoms = torch.tensor([denominators[i] for i in mb.sample_ids], dtype=torch.float32)
    staged: Staged = {"sample_denominators": denoms.clamp_min(1).to(device)}
    for name in names:
        per_sample = getattr(data, name)
        staged[name] = None if per_sample is None else mb.gather(per_sample, device)
    return staged


def _actor_loss(
    ctx: StepContext, mb: PackedBatch, inputs: Staged, totals: tuple[float, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    out = forward_packed(ctx.model, mb, temperature=ctx.temperature, chunk_size=ctx.chunk_size, with_entropy=True)
    if mb.is_empty:
        return out.anchor, {}
    old = out.log_probs.detach() if ctx.reuse_current_as_old else inputs["old_log_probs"]
    assert old is not None, "old log-probs are recomputed unless the fast path reuses the current ones"
    assert inputs["advantages"] is not None, "the trainer fills advantages before stepping"
    loss, metrics = compute_loss(
        ctx.loss_config,
        log_probs=out.log_probs,
        old_log_probs=old,
        advantages=inputs["advantages"],
        loss_mask=mb.loss_mask,
        cu_seqlens=mb.response_cu_seqlens,
        sample_denominators=inputs["sample_denominators"],  # type: ignore[arg-type]  # always staged
        num_global_tokens=totals[0],
        num_global_samples=totals[1],
        ref_log_probs=inputs["ref_log_probs"],
        rollout_log_probs=inputs["rollout_log_probs"],
        entropy=out.entropy,
        plugins=ctx.plugins,
    )
    if inputs["opd_reverse_kl"] is not None:  # reduced like the loss terms (slime's train/opd_reverse_kl)
        metrics["opd_reverse_kl"] = _reduction(ctx, mb, inputs, totals).reducer(mb.loss_mask)(inputs["opd_reverse_kl"])
    return loss + out.anchor, metrics


def _critic_loss(
    ctx: StepContext, mb: PackedBatch, inputs: Staged, totals: tuple[float, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    out = forward_values(ctx.model, mb)
    if mb.is_empty:
        return out.anchor, {}
    assert inputs["values"] is not None and inputs["returns"] is not None, "values and returns precede the step"
    loss, metrics = compute_value_loss(
        ctx.loss_config,
        values=out.values,
        old_values=inputs["values"],
        returns=inputs["returns"],
        loss_mask=mb.loss_mask,
        cu_seqlens=mb.response_cu_seqlens,
        sample_denominators=inputs["sample_denominators"],  # type: ignore[arg-type]  # always staged
        num_global_tokens=totals[0],
        num_global_samples=totals[1],
    )
    return loss + out.anchor, metrics


def _reduction(ctx: StepContext, mb: PackedBatch, inputs: Staged, totals: tuple[float, float]) -> Reduction:
    return Reduction(
        cu_seqlens=mb.response_cu_seqlens,
        sample_denominators=inputs["sample_denominators"],  # type: ignore[arg-type]  # always staged
        num_global_tokens=totals[0],
        num_global_samples=totals[1],
        calculate_per_token_loss=ctx.loss_config.calculate_per_token_loss,
    )


def _set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)


def train_step(
    ctx: StepContext, micro_batches: Sequence[PackedBatch], data: RolloutTensors, step_samples: Sequence[int]
) -> dict[str, float]:
    """The actor's step over `micro_batches` (this rank's share of `step_samples`): policy loss, AdamW.

    Returns the step's metrics, identical on every rank: loss terms (summed = global means), grad_norm, lr.
    """
    return _optimizer_step(ctx, micro_batches, data, step_samples, _ACTOR_INPUTS, _actor_loss)


def value_train_step(
    ctx: StepContext, micro_batches: Sequence[PackedBatch], data: RolloutTensors, step_samples: Sequence[int]
) -> dict[str, float]:
    """The critic's step over the same micro-batches: clipped value loss against `data.returns`, AdamW.

    Returns `value_loss`, `value_clipfrac` (global means), grad_norm, lr, skipped_step; identical on every rank.
    """
    return _optimizer_step(ctx, micro_batches, data, step_samples, _CRITIC_INPUTS, _critic_loss)


def _optimizer_step(
    ctx: StepContext,
    micro_batches: Sequence[PackedBatch],
    data: RolloutTensors,
    step_samples: Sequence[int],
    names: Sequence[str],
    micro_batch_loss: MicroBatchLoss,
) -> dict[str, float]:
    mask_sums = data.mask_sums()
    totals = (max(1.0, sum(mask_sums[i] for i in step_samples)), float(len(step_samples)))
    ctx.model.train()
    ctx.optimizer.zero_grad(set_to_none=True)
    staged = [_stage_inputs(mb, data, names, mask_sums, ctx.info.device) for mb in micro_batches]
    sums: dict[str, Tensor] = {}
    for k, (mb, inputs) in enumerate(zip(micro_batches, staged, strict=True)):
        # One rank has nobody to reduce with: accumulate unsharded float32 grads, reduce once at the end.
        _set_gradient_sync(ctx.model, ctx.info.world_size > 1 or k == len(micro_batches) - 1)
        loss, metrics = micro_batch_loss(ctx, mb, inputs, totals)
        loss.backward()
        for name, value in metrics.items():  # device tensors: no host sync per micro-batch
            sums[name] = sums[name] + value if name in sums else value
    local = dict(zip(sums, torch.stack(list(sums.values())).double().tolist(), strict=True)) if sums else {}
    grad_norm = clip_grad_norm(ctx.params, ctx.clip_grad)
    lr = float(ctx.optimizer.param_groups[0]["lr"])
    skipped = not math.isfinite(grad_norm)
    if not skipped:  # a non-finite norm would poison AdamW's moments: drop this step's update
        ctx.optimizer.step()
        ctx.scheduler.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    result = sum_over_ranks(local, ctx.info.world_size)
    result |= {"grad_norm": grad_norm, "lr": lr, "skipped_step": float(skipped)}
    return result
