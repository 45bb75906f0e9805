"""Per-sample tensors of one rollout batch, and the advantage computation over the whole batch.

Every rank holds the whole `RolloutBatch`; log-probs and values are computed on data-parallel shards and then
all-gathered (`gather_over_data_parallel`), so advantages (group baselines, whitening, reward KL) are computed
identically on every rank over the full batch with slime.loss, in its packed `[T]` response layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from slime.megatron import _megatron_globals as mg
from slime.megatron.host_to_device import split_to_device, to_device
from slime.types import ConfigError, RolloutBatch, TrainSample

PerSample = list[torch.Tensor]
"""One `[response_length]` float32 tensor per sample of the batch, in batch order."""


def _response_bounds(samples: Sequence[TrainSample]) -> list[int]:
    """`B + 1` offsets of each sample's response in the packed layout."""
    bounds = [0]
    for s in samples:
        bounds.append(bounds[-1] + s.response_length)
    return bounds


def packed_loss_mask(samples: Sequence[TrainSample], device: torch.device) -> torch.Tensor:
    """The samples' loss masks, concatenated in the packed response layout, as float32."""
    return to_device([m for s in samples for m in s.loss_mask], torch.float32, device)


def rollout_log_probs(samples: Sequence[TrainSample], device: torch.device) -> PerSample | None:
    """The engine's log-probs per sample, or None when any sample lacks them."""
    if any(s.rollout_log_probs is None for s in samples):
        return None
    return split_to_device([s.rollout_log_probs for s in samples], torch.float32, device)


def teacher_log_probs(samples: Sequence[TrainSample], device: torch.device) -> PerSample:
    """The OPD teacher's log-probs carried by the samples (`--opd-type sglang`).

    Raises:
        ConfigError: a sample has none (names the samples and where they come from).
    """
    missing = [s.index for s in samples if s.teacher_log_probs is None]
    if missing:
        raise ConfigError(
            f"--use-opd --opd-type sglang: samples {missing[:8]} carry no teacher_log_probs. The rollout fills them "
            "with --custom-rm-path slime.rollout.on_policy_distillation.reward_func --custom-reward-post-process-path "
            "slime.rollout.on_policy_distillation.post_process_rewards --rm-url <teacher>/generate."
        )
    return split_to_device([s.teacher_log_probs for s in samples], torch.float32, device)


def opd_reverse_kl(samples: Sequence[TrainSample], student: PerSample, teacher: PerSample) -> float:
    """Mean of `logp_student - logp_teacher` over the batch's loss-mask tokens (slime's `opd_reverse_kl`)."""
    device = student[0].device
    mask = packed_loss_mask(samples, device)
    diff = torch.cat([s.float() for s in student]) - torch.cat([t.to(device, torch.float32) for t in teacher])
    return float((diff * mask).sum() / mask.sum().clamp(min=1.0))


def sample_denominators(samples: Sequence[TrainSample]) -> list[float]:
    """Loss-mask tokens of each sample (at least 1): the per-sample mean's divisor."""
    return [float(max(1, sum(s.loss_mask))) for s in samples]


def gather_over_data_parallel(local: dict[int, torch.Tensor], num_samples: int) -> PerSample:
    """Merge `{sample_id: tensor}` held by the DP ranks into one list covering all `num_samples` samples."""
    merged = dict(local)
    if mg.dp_size() > 1:
        parts: list[dict[int, torch.Tensor] | None] = [None] * mg.dp_size()
        dist.all_gather_object(parts, {k: v.cpu() for k, v in local.items()}, group=mg.dp_group_no_cp())
        device = mg.device()
        merged = {k: v.to(device) for part in parts for k, v in (part or {}).items()}
    missing = [i for i in range(num_samples) if i not in merged]
    if missing:
        raise RuntimeError(f"no data-parallel rank produced results for samples {missing[:8]}")
    return [merged[i] for i in range(num_samples)]


def compute_batch_advantages(
    loss_config,
    batch: RolloutBatch,
    *,
    old_log_probs: PerSample | None,
    ref_log_probs: PerSample | None,
    values: PerSample | None,
    teacher_log_probs: PerSample | None = None,
) -> tuple[PerSample, PerSample]:
    """Advantages and returns per sample, from slime.loss's `compute_advantages` over the full batch."""
    from slime.loss import compute_advantages

    device = mg.device()
    samples = batch.samples
    bounds = _response_bounds(samples)  # kept on the host too: `cu.tolist()` would wait for the device
    cu = to_device(bounds, torch.long, device)

    def cat(per: PerSample | None) -> torch.Tensor | None:
        return None if per is None else torch.cat([t.to(device, torch.float32) for t in per])

    advantages, returns = compute_advantages(
        loss_config,
        rewards=to_device([s.reward for s in samples], torch.float32, device),
        group_ids=to_device([s.group_index for s in samples], torch.long, device),
        cu_seqlens=cu,
        loss_mask=packed_loss_mask(samples, device),
        old_log_probs=cat(old_log_probs),
        ref_log_probs=cat(ref_log_probs),
        values=cat(values),
        teacher_log_probs=cat(teacher_log_probs),
        scores=None if batch.scores is None else to_device(batch.scores, torch.float32, device),
    )
    split = [(bounds[i], bounds[i + 1]) for i in range(len(samples))]
    return [advantages[a:b] for a, b in split], [returns[a:b] for a, b in split]
