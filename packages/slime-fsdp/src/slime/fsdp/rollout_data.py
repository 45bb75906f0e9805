"""Per-sample tensors of one rollout batch (masks, log-probs, values, advantages) and the advantage computation.

Everything is a list indexed like `RolloutBatch.samples`, each entry one `[R_i]` float32 CPU tensor over the
sample's response tokens, so micro-batches of any plan can gather their slice. Advantages are computed
once over the whole batch with slime.loss (group statistics and whitening need every sample). It runs no
model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from slime.loss import LossConfig, compute_advantages
from slime.loss.plugins import LossPlugins
from slime.types import RolloutBatch

PerSample = list[Tensor]


@dataclasses.dataclass(slots=True)
class RolloutTensors:
    """The batch's per-sample tensors; `None` fields are not (yet) known."""

    loss_masks: PerSample
    rollout_log_probs: PerSample | None = None
    old_log_probs: PerSample | None = None
    ref_log_probs: PerSample | None = None
    teacher_log_probs: PerSample | None = None
    """OPD: the teacher's log-probs (from the batch with opd_type=sglang, computed with opd_type=megatron)."""
    values: PerSample | None = None
    """PPO: the critic's values before this call's updates (V_old of the value clip)."""
    advantages: PerSample | None = None
    returns: PerSample | None = None
    opd_reverse_kl: PerSample | None = None
    """OPD: old - teacher log-probs per token, the term `opd_kl_coef` scales (logged, not trained on)."""

    @classmethod
    def from_batch(cls, batch: RolloutBatch) -> RolloutTensors:
        """Masks and (when every sample has them) the engine's and the SGLang teacher's log-probs."""
        masks = [torch.tensor(s.loss_mask, dtype=torch.float32) for s in batch.samples]
        return cls(
            loss_masks=masks,
            rollout_log_probs=_per_sample([s.rollout_log_probs for s in batch.samples]),
            teacher_log_probs=_per_sample([s.teacher_log_probs for s in batch.samples]),
        )

    def mask_sums(self) -> list[float]:
        """Loss-mask tokens of each sample (the per-sample denominators before clamping)."""
        return [float(m.sum()) for m in self.loss_masks]


def _per_sample(values: list[tuple[float, ...] | None]) -> PerSample | None:
    if any(v is None for v in values):
        return None
    return [torch.tensor(v, dtype=torch.float32) for v in values]


def cat_packed(per_sample: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """[R_i] tensors -> ([T] concatenation, [B+1] int64 cu_seqlens)."""
    lengths = torch.tensor([t.numel() for t in per_sample], dtype=torch.int64)
    cu = torch.zeros(len(per_sample) + 1, dtype=torch.int64)
    cu[1:] = torch.cumsum(lengths, 0)
    return torch.cat(list(per_sample)), cu


def split_packed(packed: Tensor, cu_seqlens: Tensor) -> PerSample:
    """Inverse of `cat_packed`."""
    return list(packed.split((cu_seqlens[1:] - cu_seqlens[:-1]).tolist()))


def _optional_cat(per_sample: PerSample | None) -> Tensor | None:
    return None if per_sample is None else torch.cat(per_sample)


def fill_advantages(config: LossConfig, batch: RolloutBatch, data: RolloutTensors, plugins: LossPlugins) -> None:
    """Set `data.advantages` and `data.returns` for every sample of `batch` (slime.loss.compute_advantages).

    With `use_opd` it also sets `data.opd_reverse_kl` (old - teacher), the term slime.loss subtracts.
    """
    loss_mask, cu = cat_packed(data.loss_masks)
    advantages, returns = compute_advantages(
        config,
        rewards=torch.tensor([s.reward for s in batch.samples], dtype=torch.float32),
        group_ids=torch.tensor([s.group_index for s in batch.samples], dtype=torch.int64),
        cu_seqlens=cu,
        loss_mask=loss_mask,
        old_log_probs=_optional_cat(data.old_log_probs),
        ref_log_probs=_optional_cat(data.ref_log_probs),
        values=_optional_cat(data.values),
        teacher_log_probs=_optional_cat(data.teacher_log_probs) if config.use_opd else None,
        plugins=plugins,
        scores=None if batch.scores is None else torch.tensor(batch.scores, dtype=torch.float32),
    )
    data.advantages = split_packed(advantages.float(), cu)
    data.returns = split_packed(returns.float(), cu)
    if config.use_opd and data.old_log_probs is not None and data.teacher_log_probs is not None:
        pairs = zip(data.old_log_probs, data.teacher_log_probs, strict=True)
        data.opd_reverse_kl = [old - teacher for old, teacher in pairs]
