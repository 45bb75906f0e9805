"""Group-relative reward baselines: per-sample scores from per-sample rewards and group ids.

Every function maps rewards [B] and group ids [B] (int64, any values, groups may be ragged) to scores [B].
A group of one sample has zero centred score and std 0. Nothing here knows tokens; see `token_advantage`.
"""

from __future__ import annotations

import torch
from torch import Tensor

GRPO_STD_EPS = 1e-6
"""Added to the group std before dividing (slime: `/ (std + 1e-6)`)."""


def dense_group_index(group_ids: Tensor) -> Tensor:
    """[B] arbitrary int64 ids -> [B] dense ids in [0, #groups), without `torch.unique`'s host sync."""
    sorted_ids, order = torch.sort(group_ids, stable=True)
    is_new = torch.ones_like(sorted_ids, dtype=torch.long)
    is_new[1:] = (sorted_ids[1:] != sorted_ids[:-1]).long()
    dense_sorted = torch.cumsum(is_new, 0) - 1
    return torch.empty_like(dense_sorted).scatter_(0, order, dense_sorted)


def _group_stats(rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample group mean, group size and unbiased (Bessel) group std, each [B]."""
    inverse = dense_group_index(group_ids)
    num_groups = group_ids.shape[0]  # an upper bound on the group count, so no host sync is needed
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    zeros = torch.zeros(num_groups, dtype=rewards.dtype, device=rewards.device)
    counts = zeros.index_add(0, inverse, torch.ones_like(rewards))
    means = zeros.index_add(0, inverse, rewards) / counts.clamp_min(1)
    centred = rewards - means[inverse]
    sq = zeros.index_add(0, inverse, centred * centred)
    # Bessel-corrected like torch.std; a singleton group has no spread, so its std is defined as 0.
    std = torch.where(counts > 1, sq / (counts - 1).clamp_min(1), torch.zeros_like(sq)).sqrt()
    return means[inverse], counts[inverse], std[inverse]


def raw_rewards(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """No baseline: the rewards themselves (ppo, reinforce_plus_plus, or normalisation disabled)."""
    del group_ids
    return rewards.to(torch.promote_types(rewards.dtype, torch.float32))


def group_mean_baseline(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """r - mean_g(r) (Dr.GRPO, REINFORCE++-baseline, GRPO without std normalisation)."""
    means, _, _ = _group_stats(rewards, group_ids)
    return raw_rewards(rewards, group_ids) - means


def grpo_scores(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """(r - mean_g(r)) / (std_g(r) + 1e-6), std Bessel-corrected (GRPO, GSPO, CISPO)."""
    means, _, std = _group_stats(rewards, group_ids)
    return (raw_rewards(rewards, group_ids) - means) / (std + GRPO_STD_EPS)


def rloo_scores(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """Leave-one-out: r_i - mean_{j != i} r_j = n / (n - 1) * (r_i - mean_g(r)); 0 for a singleton."""
    means, counts, _ = _group_stats(rewards, group_ids)
    scale = torch.where(counts > 1, counts / (counts - 1).clamp_min(1), torch.zeros_like(counts))
    return (raw_rewards(rewards, group_ids) - means) * scale
