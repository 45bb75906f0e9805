"""Train/inference mismatch corrections (TIS, IcePop, rejection sampling) and OPSM sequence masking.

TIS-style functions share one signature (old_log_probs, rollout_log_probs, loss_mask, *, low, high)
-> `TisResult`; their weights multiply the per-token policy loss. Nothing here reduces or has gradients.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from slime.loss.packing import broadcast_to_tokens
from slime.loss.ratio import token_log_ratio
from slime.loss.reduce import per_sample_sum


@dataclasses.dataclass(frozen=True, slots=True)
class TisResult:
    """Per-token outputs of a mismatch correction, all [T] and detached."""

    weights: Tensor
    """Multiplies the per-token policy loss."""
    loss_mask: Tensor
    """Mask to reduce the corrected loss with (rejection may zero entries); denominators stay unchanged."""
    ratio: Tensor
    """The raw ratio exp(logp_old_train - logp_rollout) (logged as `tis`)."""
    is_clipped: Tensor
    """0/1: whether the weight differs from the raw ratio (logged as `tis_clipfrac`)."""


def _train_rollout_ratio(old_log_probs: Tensor, rollout_log_probs: Tensor, loss_mask: Tensor) -> Tensor:
    return torch.exp(token_log_ratio(old_log_probs, rollout_log_probs, loss_mask)).detach()


def vanilla_tis(
    old_log_probs: Tensor, rollout_log_probs: Tensor, loss_mask: Tensor, *, low: float, high: float
) -> TisResult:
    """Truncated IS: w = clamp(exp(logp_old - logp_rollout), low, high)."""
    ratio = _train_rollout_ratio(old_log_probs, rollout_log_probs, loss_mask)
    weights = ratio.clamp(low, high)
    return TisResult(weights, loss_mask, ratio, (weights != ratio).to(ratio.dtype))


def icepop_tis(
    old_log_probs: Tensor, rollout_log_probs: Tensor, loss_mask: Tensor, *, low: float, high: float
) -> TisResult:
    """IcePop: w = ratio inside [low, high], 0 outside (the token is dropped, not truncated)."""
    ratio = _train_rollout_ratio(old_log_probs, rollout_log_probs, loss_mask)
    inside = (ratio >= low) & (ratio <= high)
    weights = torch.where(inside, ratio, torch.zeros_like(ratio))
    return TisResult(weights, loss_mask, ratio, (~inside).to(ratio.dtype))


def rejection_tis(
    old_log_probs: Tensor, rollout_log_probs: Tensor, loss_mask: Tensor, *, low: float, high: float
) -> TisResult:
    """Token rejection sampling (MIS mask mode): tokens with a ratio outside [low, high] leave the mask; w = 1."""
    ratio = _train_rollout_ratio(old_log_probs, rollout_log_probs, loss_mask)
    inside = (ratio >= low) & (ratio <= high)
    mask = loss_mask * inside.to(loss_mask.dtype)
    return TisResult(torch.ones_like(ratio), mask, ratio, (~inside).to(ratio.dtype))


def opsm_mask(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    *,
    delta: float,
) -> Tensor:
    """OPSM: 0 for tokens with A < 0 in sequences whose masked mean(logp_old - logp) > delta, else 1; [T]."""
    mask = loss_mask.to(log_probs.dtype)
    drift = torch.where(loss_mask.bool(), old_log_probs - log_probs, torch.zeros_like(log_probs)).detach()
    mean_drift = per_sample_sum(drift, cu_seqlens) / per_sample_sum(mask, cu_seqlens).clamp_min(1)
    drifted = broadcast_to_tokens(mean_drift, cu_seqlens, log_probs.shape[0]) > delta
    return (~((advantages < 0) & drifted)).to(log_probs.dtype)
