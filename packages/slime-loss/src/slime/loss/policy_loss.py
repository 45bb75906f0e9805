"""Policy losses: PPO clipped surrogate (clip-higher, dual clip) with token or GSPO sequence ratios, and CISPO.

Per-token losses only: masking and reduction happen in `reduce`. All policy losses share one signature
(log_probs, old_log_probs, advantages, loss_mask, cu_seqlens, *, eps_clip, eps_clip_high, eps_clip_c)
-> (losses [T], clipfrac [T]) so that `registry.POLICY_LOSSES` can hold them side by side.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slime.loss.ratio import sequence_log_ratio, token_log_ratio


def clipped_surrogate(
    log_ratio: Tensor, advantages: Tensor, eps_clip: float, eps_clip_high: float, eps_clip_c: float | None
) -> tuple[Tensor, Tensor]:
    """L = max(-rho A, -clip(rho, 1 - eps, 1 + eps_high) A); dual clip: for A < 0, L = min(L, -c A).

    Args:
        log_ratio: [T] log rho (token or broadcast sequence level).
        advantages: [T]. eps_clip, eps_clip_high: clip range. eps_clip_c: dual-clip c > 1, or None.

    Returns:
        (losses [T], clipfrac [T] as 0/1 floats: whether the clipped term was the larger one).
    """
    ratio = torch.exp(log_ratio)
    unclipped = -ratio * advantages
    clipped = -ratio.clamp(1 - eps_clip, 1 + eps_clip_high) * advantages
    losses = torch.maximum(unclipped, clipped)
    clipfrac = (clipped > unclipped).to(losses.dtype)
    if eps_clip_c is not None:
        capped = torch.minimum(losses, -eps_clip_c * advantages)
        losses = torch.where(advantages < 0, capped, losses)
    return losses, clipfrac


def ppo_policy_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    *,
    eps_clip: float,
    eps_clip_high: float,
    eps_clip_c: float | None,
) -> tuple[Tensor, Tensor]:
    """Token-level PPO clip (GRPO, Dr.GRPO, RLOO, REINFORCE++, PPO); [T] inputs -> (losses, clipfrac) [T]."""
    del cu_seqlens
    log_ratio = token_log_ratio(log_probs, old_log_probs, loss_mask)
    return clipped_surrogate(log_ratio, advantages, eps_clip, eps_clip_high, eps_clip_c)


def gspo_policy_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    *,
    eps_clip: float,
    eps_clip_high: float,
    eps_clip_c: float | None,
) -> tuple[Tensor, Tensor]:
    """GSPO: the clipped surrogate with s_i = exp(masked mean log-ratio of sample i) on every token."""
    log_ratio = sequence_log_ratio(log_probs, old_log_probs, loss_mask, cu_seqlens)
    return clipped_surrogate(log_ratio, advantages, eps_clip, eps_clip_high, eps_clip_c)


def cispo_policy_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    *,
    eps_clip: float,
    eps_clip_high: float,
    eps_clip_c: float | None,
) -> tuple[Tensor, Tensor]:
    """[T] inputs -> (losses [T], clipfrac [T]: whether rho was outside [1 - eps, 1 + eps_high]).

    `eps_clip_c` is ignored (dual clip bounds a ratio-weighted loss; CISPO's weight is already bounded).
    """
    del cu_seqlens, eps_clip_c
    ratio = torch.exp(token_log_ratio(log_probs, old_log_probs, loss_mask)).detach()
    weight = ratio.clamp(1 - eps_clip, 1 + eps_clip_high)
    safe_log_probs = torch.where(loss_mask.bool(), log_probs, torch.zeros_like(log_probs))
    losses = -weight * advantages * safe_log_probs
    clipfrac = (weight != ratio).to(losses.dtype)
    return losses, clipfrac
