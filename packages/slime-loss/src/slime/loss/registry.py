"""Name -> function maps for every algorithm variant, keyed by slime's flag values.

Adding a variant is one function in its concept module, one line here and one reference test.
The maps are plain dicts (no pickling, no Ray); `compute_advantages` / `compute_loss` look names up here.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from slime.loss.group_advantage import group_mean_baseline, grpo_scores, raw_rewards, rloo_scores
from slime.loss.kl import kl_k1, kl_k2, kl_k3, kl_low_var
from slime.loss.off_policy import TisResult, icepop_tis, rejection_tis, vanilla_tis
from slime.loss.policy_loss import cispo_policy_loss, gspo_policy_loss, ppo_policy_loss
from slime.loss.token_advantage import (
    group_broadcast_advantages,
    ppo_gae_advantages,
    reinforce_plus_plus_advantages,
    reinforce_plus_plus_baseline_advantages,
)

GroupScoreFn = Callable[[Tensor, Tensor], Tensor]
TokenAdvantageFn = Callable[..., tuple[Tensor, Tensor]]
PolicyLossFn = Callable[..., tuple[Tensor, Tensor]]
KlFn = Callable[[Tensor, Tensor], Tensor]
TisFn = Callable[..., TisResult]

GROUP_SCORES: dict[str, GroupScoreFn] = {
    "grpo": grpo_scores,
    "dr_grpo": group_mean_baseline,
    "gspo": grpo_scores,
    "cispo": grpo_scores,
    "rloo": rloo_scores,
    "reinforce_plus_plus": raw_rewards,
    "reinforce_plus_plus_baseline": group_mean_baseline,
    "ppo": raw_rewards,
}
"""advantage_estimator -> group baseline on per-sample rewards [B] (with group ids [B])."""

TOKEN_ADVANTAGES: dict[str, TokenAdvantageFn] = {
    "grpo": group_broadcast_advantages,
    "dr_grpo": group_broadcast_advantages,
    "gspo": group_broadcast_advantages,
    "cispo": group_broadcast_advantages,
    "rloo": group_broadcast_advantages,
    "reinforce_plus_plus": reinforce_plus_plus_advantages,
    "reinforce_plus_plus_baseline": reinforce_plus_plus_baseline_advantages,
    "ppo": ppo_gae_advantages,
}
"""advantage_estimator -> per-sample scores to per-token (advantages, returns)."""

POLICY_LOSSES: dict[str, PolicyLossFn] = {
    "grpo": ppo_policy_loss,
    "dr_grpo": ppo_policy_loss,
    "gspo": gspo_policy_loss,
    "cispo": cispo_policy_loss,
    "rloo": ppo_policy_loss,
    "reinforce_plus_plus": ppo_policy_loss,
    "reinforce_plus_plus_baseline": ppo_policy_loss,
    "ppo": ppo_policy_loss,
}
"""advantage_estimator -> per-token policy loss and clip fraction."""

KL_ESTIMATORS: dict[str, KlFn] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3, "low_var_kl": kl_low_var}
"""kl_loss_type -> per-token KL estimator."""

TIS_FUNCTIONS: dict[str, TisFn] = {"truncate": vanilla_tis, "icepop": icepop_tis, "reject": rejection_tis}
"""tis_type -> train/rollout mismatch correction."""
