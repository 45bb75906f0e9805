"""One optimizer step over packed micro-batches, with the actor's policy loss or the critic's value loss.

The loss of each micro-batch comes from slime.loss (`compute_loss` / `compute_value_loss`) and is already divided
by the step's global denominators (loss-mask tokens and samples over all data-parallel ranks), so gradients are
summed, never averaged, across micro-batches and ranks, and the update does not depend on how the step's samples
are split into micro-batches. Metrics are summed the same way, then broadcast to the whole pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.distributed as dist

from slime.megatron import _megatron_globals as mg
from slime.megatron.cuda_graphs import TrainGraphs
from slime.megatron.forward import HeadSpec, LossFn, forward_backward
from slime.megatron.host_to_device import to_device
from slime.megatron.packing import PackedMicroBatch, gather_response_values


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StepInputs:
    """Per-sample tensors (indexed by sample id) and the global denominators of one optimizer step."""

    advantages: Sequence[torch.Tensor]
    old_log_probs: Sequence[torch.Tensor] | None
    ref_log_probs: Sequence[torch.Tensor] | None = None
    rollout_log_probs: Sequence[torch.Tensor] | None = None
    old_values: Sequence[torch.Tensor] | None = None
    returns: Sequence[torch.Tensor] | None = None
    sample_denominators: Sequence[float]
    num_global_tokens: float
    num_global_samples: float


def _pick(per_sample: Sequence[torch.Tensor] | None, mb: PackedMicroBatch) -> torch.Tensor | None:
    if per_sample is None:
        return None
    return gather_response_values([per_sample[i] for i in mb.sample_ids], mb.loss_mask.device)


def _denominators(inputs: StepInputs, mb: PackedMicroBatch) -> torch.Tensor:
    # queued without a sync: this runs between the micro-batch's forward and its backward
    return to_device([inputs.sample_denominators[i] for i in mb.sample_ids], torch.float32, mb.loss_mask.device)


def actor_loss_fn(loss_config, inputs: StepInputs) -> LossFn:
    """Policy loss of a micro-batch; with `old_log_probs=None` the old policy is the current one (ratio 1)."""
    from slime.loss import compute_loss

    def loss_fn(mb: PackedMicroBatch, outputs: dict[str, torch.Tensor]):
        log_probs = outputs["log_probs"]
        old = _pick(inputs.old_log_probs, mb)
        return compute_loss(
            loss_config,
            log_probs=log_probs,
            old_log_probs=log_probs.detach() if old is None else old,
            advantages=_pick(inputs.advantages, mb),
            loss_mask=mb.loss_mask,
            cu_seqlens=mb.response_cu_seqlens,
            sample_denominators=_denominators(inputs, mb),
            num_global_tokens=inputs.num_global_tokens,
            num_global_samples=inputs.num_global_samples,
            ref_log_probs=_pick(inputs.ref_log_probs, mb),
            rollout_log_probs=_pick(inputs.rollout_log_probs, mb),
            entropy=outputs.get("entropy"),
        )

    return loss_fn


def critic_loss_fn(loss_config, inputs: StepInputs) -> LossFn:
    """Clipped value loss of a micro-batch against the returns."""
    from slime.loss import compute_value_loss

    def loss_fn(mb: PackedMicroBatch, outputs: dict[str, torch.Tensor]):
        return compute_value_loss(
            loss_config,
            values=outputs["values"],
            old_values=_pick(inputs.old_values, mb),
            returns=_pick(inputs.returns, mb),
            loss_mask=mb.loss_mask,
            cu_seqlens=mb.response_cu_seqlens,
            sample_denominators=_denominators(inputs, mb),
            num_global_tokens=inputs.num_global_tokens,
            num_global_samples=inputs.num_global_samples,
        )

    return loss_fn


def optimizer_step(
    stack, batches: Sequence[PackedMicroBatch], head: HeadSpec, loss_fn: LossFn, graphs: TrainGraphs | None = None
) -> dict[str, float]:
    """Zero grads, accumulate over `batches` (through `graphs` if given), step the optimizer and the LR schedule;
    returns step metrics."""
    for model in stack.models:
        model.zero_grad_buffer()
    stack.optimizer.zero_grad()
    per_micro_batch = forward_backward(stack, batches, head, loss_fn, graphs)
    update_ok, grad_norm, _ = stack.optimizer.step()
    if update_ok:
        stack.scheduler.step(increment=1)
    metrics = _reduce_metrics(per_micro_batch)
    metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
    metrics["lr"] = float(stack.optimizer.param_groups[0]["lr"])
    metrics["skipped_step"] = 0.0 if update_ok else 1.0
    return metrics


def _reduce_metrics(per_micro_batch: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    payload: list[dict[str, float] | None] = [None]
    if mg.is_last_stage():
        names = sorted(per_micro_batch[0]) if per_micro_batch else []
        device = mg.device()
        totals = torch.zeros(len(names), dtype=torch.float64, device=device)
        for metrics in per_micro_batch:
            totals += torch.stack([metrics[n].to(device, torch.float64).reshape(()) for n in names])
        if mg.dp_size() > 1:
            dist.all_reduce(totals, group=mg.dp_group())
        payload[0] = dict(zip(names, totals.tolist(), strict=True))
    if mg.pp_size() > 1:
        dist.broadcast_object_list(payload, src=mg.pp_last_rank(), group=mg.pp_group())
    return payload[0] or {}
