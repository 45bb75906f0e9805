"""Token-level advantages and returns from per-sample scores, one function per estimator family.

All share one signature: per-sample scores [B] (after the group baseline), a per-token KL penalty [T]
(`kl_coef * KL_t * m_t`, zeros when unused), the packed layout, optional values and the discounts;
they return (advantages [T], returns [T]). Whitening and OPD are applied later by `advantages`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slime.loss.packing import broadcast_to_tokens
from slime.loss.reduce import sample_index
from slime.loss.returns_chunked import discounted_cumsum_chunked, gae_chunked


def _last_unmasked_index(loss_mask: Tensor, cu_seqlens: Tensor) -> Tensor:
    """[B] index of each sample's last token with mask 1, or -1 when it has none."""
    num_tokens = loss_mask.shape[0]
    positions = torch.arange(num_tokens, device=loss_mask.device)
    candidates = torch.where(loss_mask.bool(), positions, torch.full_like(positions, -1))
    out = torch.full((cu_seqlens.shape[0] - 1,), -1, dtype=torch.long, device=loss_mask.device)
    index = sample_index(cu_seqlens.to(loss_mask.device), num_tokens)
    return out.scatter_reduce(0, index, candidates, reduce="amax", include_self=True)


def _place(token_rewards: Tensor, index: Tensor, scores: Tensor) -> Tensor:
    """Add `scores[i]` at position `index[i]` (skipping index -1)."""
    if token_rewards.numel() == 0:  # no response token at all: nothing to place (index would clamp to 0)
        return token_rewards
    valid = index >= 0
    return token_rewards.index_put((index.clamp_min(0),), torch.where(valid, scores, 0), accumulate=True)


def group_broadcast_advantages(
    *,
    scores: Tensor,
    kl_penalty: Tensor,
    cu_seqlens: Tensor,
    loss_mask: Tensor,
    values: Tensor | None,
    gamma: float,
    lambd: float,
) -> tuple[Tensor, Tensor]:
    """GRPO family: A_t = score of the sample for every token; returns = A (the KL penalty is ignored)."""
    del kl_penalty, values, gamma, lambd
    advantages = broadcast_to_tokens(scores, cu_seqlens, loss_mask.shape[0])
    return advantages, advantages


def reinforce_plus_plus_advantages(
    *,
    scores: Tensor,
    kl_penalty: Tensor,
    cu_seqlens: Tensor,
    loss_mask: Tensor,
    values: Tensor | None,
    gamma: float,
    lambd: float,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++: r_t = -kl_t (+ score at the last unmasked token); A = G_t = sum_k gamma^(k-t) r_k."""
    del values, lambd
    token_rewards = _place(-kl_penalty.to(scores.dtype), _last_unmasked_index(loss_mask, cu_seqlens), scores)
    returns = discounted_cumsum_chunked(token_rewards, cu_seqlens, gamma)
    return returns, returns


def reinforce_plus_plus_baseline_advantages(
    *,
    scores: Tensor,
    kl_penalty: Tensor,
    cu_seqlens: Tensor,
    loss_mask: Tensor,
    values: Tensor | None,
    gamma: float,
    lambd: float,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++-baseline: A_t = (r - mean_g r) - kl_t; returns = A."""
    del values, gamma, lambd
    advantages = broadcast_to_tokens(scores, cu_seqlens, loss_mask.shape[0]) - kl_penalty.to(scores.dtype)
    return advantages, advantages


def ppo_gae_advantages(
    *,
    scores: Tensor,
    kl_penalty: Tensor,
    cu_seqlens: Tensor,
    loss_mask: Tensor,
    values: Tensor | None,
    gamma: float,
    lambd: float,
) -> tuple[Tensor, Tensor]:
    """PPO: r_t = -kl_t (+ reward on the last response token); GAE with the critic values.

    Raises:
        ValueError: `values` is None.
    """
    if values is None:
        raise ValueError("advantage_estimator='ppo' needs critic `values` [T]; pass the critic's values.")
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    last = torch.where(lengths > 0, cu_seqlens[1:] - 1, torch.full_like(lengths, -1)).to(loss_mask.device)
    token_rewards = _place(-kl_penalty.to(scores.dtype), last, scores)
    return gae_chunked(token_rewards, values.to(scores.dtype), cu_seqlens, gamma, lambd)
