"""`compute_advantages`: rewards -> per-token advantages and returns for a whole rollout batch.

Order (slime's): reward KL (`kl_coef`), group baseline, estimator (or the custom advantage plugin),
on-policy distillation, whitening. Runs without autograd. Statistics (group means, whitening) are over
the tensors given, so pass the whole rollout batch, not one micro-batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slime.loss.config import GROUP_NORMALIZED_ESTIMATORS, KL_REWARD_ESTIMATORS, LossConfig
from slime.loss.group_advantage import group_mean_baseline, raw_rewards
from slime.loss.kl import kl_estimate
from slime.loss.plugins import CustomAdvantageFn, LossPlugins, plugins_for
from slime.loss.registry import GROUP_SCORES, TOKEN_ADVANTAGES, GroupScoreFn
from slime.loss.whitening import masked_whiten


def group_score_fn(config: LossConfig) -> GroupScoreFn:
    """The group baseline `config` selects (the normalisation flags override the estimator's default)."""
    if config.disable_rewards_normalization:
        return raw_rewards
    if config.disable_grpo_std_normalization and config.advantage_estimator in GROUP_NORMALIZED_ESTIMATORS:
        return group_mean_baseline
    return GROUP_SCORES[config.advantage_estimator]


def reward_kl(
    config: LossConfig, old_log_probs: Tensor | None, ref_log_probs: Tensor | None, loss_mask: Tensor
) -> Tensor:
    """[T] masked KL estimate (old vs ref) used for reward shaping; zeros when `kl_coef` is 0 or unused."""
    if config.kl_coef == 0 or config.advantage_estimator not in KL_REWARD_ESTIMATORS:
        return torch.zeros(loss_mask.shape, dtype=torch.float32, device=loss_mask.device)
    if old_log_probs is None or ref_log_probs is None:
        raise ValueError(
            f"kl_coef={config.kl_coef} with advantage_estimator={config.advantage_estimator!r} needs "
            "`old_log_probs` and `ref_log_probs`; pass both or set kl_coef=0."
        )
    return kl_estimate(old_log_probs, ref_log_probs, config.kl_loss_type) * loss_mask.to(old_log_probs.dtype)


def _check_layout(rewards: Tensor, group_ids: Tensor, cu_seqlens: Tensor, loss_mask: Tensor) -> None:
    num_samples = cu_seqlens.shape[0] - 1
    if rewards.shape != (num_samples,) or group_ids.shape != (num_samples,):
        raise ValueError(
            f"`rewards` {tuple(rewards.shape)} and `group_ids` {tuple(group_ids.shape)} must both be [B]={num_samples} "
            "(one entry per sample; cu_seqlens has B+1 entries)."
        )
    if loss_mask.dim() != 1:
        raise ValueError(f"`loss_mask` must be the packed [T] mask (got shape {tuple(loss_mask.shape)}).")


def _run_custom(
    config: LossConfig, custom: CustomAdvantageFn, rollout_data: dict[str, Tensor | None]
) -> tuple[Tensor, Tensor]:
    custom(config, rollout_data)
    advantages, returns = rollout_data.get("advantages"), rollout_data.get("returns")
    if advantages is None or returns is None:
        raise ValueError("the custom advantage function must set rollout_data['advantages'] and ['returns'].")
    return advantages, returns


@torch.no_grad()
def compute_advantages(
    config: LossConfig,
    *,
    rewards: Tensor,
    group_ids: Tensor,
    cu_seqlens: Tensor,
    loss_mask: Tensor,
    old_log_probs: Tensor | None = None,
    ref_log_probs: Tensor | None = None,
    values: Tensor | None = None,
    teacher_log_probs: Tensor | None = None,
    plugins: LossPlugins | None = None,
    scores: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns of every response token of the rollout batch.

    Args:
        config: the estimator and its flags.
        rewards: [B] raw scalar rewards. group_ids: [B] int64, equal for samples of one prompt.
        cu_seqlens: [B+1] int64 offsets of each sample's response tokens in the packed [T] layout.
        loss_mask: [T] 0/1. old_log_probs, ref_log_probs: [T], needed when the reward KL is used.
        values: [T] critic values (ppo). teacher_log_probs: [T] (use_opd).
        plugins: resolved plugins; None resolves the config's paths now.
        scores: [B] per-sample scores that replace the group baseline (slime's reward post-process returns them);
            a custom advantage function then sees them as `rewards`.

    Returns:
        (advantages [T], returns [T]), float32 (float64 for float64 rewards), without autograd history.
    """
    _check_layout(rewards, group_ids, cu_seqlens, loss_mask)
    if scores is not None and scores.shape != rewards.shape:
        raise ValueError(f"`scores` {tuple(scores.shape)} must be [B]={rewards.shape[0]}, one per sample.")
    kl = reward_kl(config, old_log_probs, ref_log_probs, loss_mask)
    custom = plugins_for(config, plugins).custom_advantage
    if custom is not None:
        rollout_data: dict[str, Tensor | None] = {
            "rewards": rewards if scores is None else scores, "group_ids": group_ids, "cu_seqlens": cu_seqlens,
            "loss_mask": loss_mask, "old_log_probs": old_log_probs, "ref_log_probs": ref_log_probs, "values": values,
            "kl": kl,
        }  # fmt: skip
        advantages, returns = _run_custom(config, custom, rollout_data)
    else:
        baseline = group_score_fn(config)(rewards, group_ids) if scores is None else scores
        advantages, returns = TOKEN_ADVANTAGES[config.advantage_estimator](
            scores=baseline, kl_penalty=config.kl_coef * kl, cu_seqlens=cu_seqlens,
            loss_mask=loss_mask, values=values, gamma=config.gamma, lambd=config.lambd,
        )  # fmt: skip
    if config.use_opd:
        if old_log_probs is None or teacher_log_probs is None:
            raise ValueError("use_opd needs `old_log_probs` and `teacher_log_probs` [T]; pass both.")
        advantages = advantages - config.opd_kl_coef * (old_log_probs - teacher_log_probs).to(advantages.dtype)
    if config.normalize_advantages:
        advantages = masked_whiten(advantages, loss_mask)
    return advantages, returns
