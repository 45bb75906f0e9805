"""One optimizer step: forward/backward over this rank's micro-batches, clip, AdamW, LR schedule.

Each micro-batch's loss comes from slime.loss already divided by the step's GLOBAL denominators (loss-mask
tokens or samples of the whole step over all ranks), and FSDP sums gradients over ranks, so gradient
accumulation needs no rescaling and any micro-batch split or world size gives the same update. Metrics
are summed over micro-batches and ranks the same way. It does not plan micro-batches or compute
advantages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule

from slime.fsdp.distributed import DistInfo, sum_over_ranks
from slime.fsdp.forward import forward_packed
from slime.fsdp.optimizer import clip_grad_norm
from slime.fsdp.packed_batch import PackedBatch
from slime.fsdp.rollout_data import RolloutTensors
from slime.loss import LossConfig, compute_loss
from slime.loss.plugins import LossPlugins


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StepContext:
    """What every step of one `train()` call shares."""

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
    mb: PackedBatch, data: RolloutTensors, denominators: Sequence[float], device: torch.device
) -> dict[str, Tensor | None]:
    """This micro-batch's per-token loss inputs on the device (copied before the loop: no drain mid-step)."""
    if mb.is_empty:
        return {}
    assert data.advantages is not None  # the trainer fills them before stepping
    denoms = torch.tensor([denominators[i] for i in mb.sample_ids], dtype=torch.float32)
    return {
        "advantages": mb.gather(data.advantages, device),
        "old_log_probs": None if data.old_log_probs is None else mb.gather(data.old_log_probs, device),
        "ref_log_probs": None if data.ref_log_probs is None else mb.gather(data.ref_log_probs, device),
        "rollout_log_probs": None if data.rollout_log_probs is None else mb.gather(data.rollout_log_probs, device),
        "sample_denominators": denoms.clamp_min(1).to(device),
    }


def _micro_batch_loss(
    ctx: StepContext, mb: PackedBatch, inputs: dict[str, Tensor | None], totals: tuple[float, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    out = forward_packed(ctx.model, mb, temperature=ctx.temperature, chunk_size=ctx.chunk_size, with_entropy=True)
    if mb.is_empty:
        return out.anchor, {}
    old = out.log_probs.detach() if ctx.reuse_current_as_old else inputs["old_log_probs"]
    assert old is not None, "old log-probs are recomputed unless the fast path reuses the current ones"
    loss, metrics = compute_loss(
        ctx.loss_config,
        log_probs=out.log_probs,
        old_log_probs=old,
        advantages=inputs["advantages"],  # type: ignore[arg-type]  # set for every real micro-batch
        loss_mask=mb.loss_mask,
        cu_seqlens=mb.response_cu_seqlens,
        sample_denominators=inputs["sample_denominators"],  # type: ignore[arg-type]
        num_global_tokens=totals[0],
        num_global_samples=totals[1],
        ref_log_probs=inputs["ref_log_probs"],
        rollout_log_probs=inputs["rollout_log_probs"],
        entropy=out.entropy,
        plugins=ctx.plugins,
    )
    return loss + out.anchor, metrics


def _set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)


def train_step(
    ctx: StepContext, micro_batches: Sequence[PackedBatch], data: RolloutTensors, step_samples: Sequence[int]
) -> dict[str, float]:
    """Accumulate gradients over `micro_batches` (this rank's share of `step_samples`) and take one step.

    Returns the step's metrics, identical on every rank: loss terms (summed = global means), grad_norm, lr.
    """
    mask_sums = data.mask_sums()
    totals = (max(1.0, sum(mask_sums[i] for i in step_samples)), float(len(step_samples)))
    ctx.model.train()
    ctx.optimizer.zero_grad(set_to_none=True)
    staged = [_stage_inputs(mb, data, mask_sums, ctx.info.device) for mb in micro_batches]
    sums: dict[str, Tensor] = {}
    for k, (mb, inputs) in enumerate(zip(micro_batches, staged, strict=True)):
        # One rank has nobody to reduce with: accumulate unsharded float32 grads, reduce once at the end.
        _set_gradient_sync(ctx.model, ctx.info.world_size > 1 or k == len(micro_batches) - 1)
        loss, metrics = _micro_batch_loss(ctx, mb, inputs, totals)
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
