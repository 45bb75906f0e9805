"""slime.loss: pure torch RL math: advantages, KL estimators, policy/value losses, TIS and reductions."""

from slime.loss.advantages import compute_advantages
from slime.loss.config import AdvantageEstimator, KlType, LossConfig, LossType, TisType
from slime.loss.group_advantage import group_mean_baseline, grpo_scores, raw_rewards, rloo_scores
from slime.loss.kl import kl_estimate, kl_k1, kl_k2, kl_k3, kl_low_var
from slime.loss.logprob import entropy_from_logits, log_probs_and_entropy_from_logits, log_probs_from_logits
from slime.loss.loss import compute_loss, compute_value_loss
from slime.loss.off_policy import TisResult, icepop_tis, opsm_mask, rejection_tis, vanilla_tis
from slime.loss.plugins import CustomAdvantageFn, CustomLossFn, CustomTisFn, PgLossReducerFactory, resolve_loss_plugins
from slime.loss.policy_loss import cispo_policy_loss, clipped_surrogate, gspo_policy_loss, ppo_policy_loss
from slime.loss.reduce import Reducer, Reduction, make_reducer, sum_of_sample_mean, sum_of_tokens
from slime.loss.returns import discounted_cumsum_serial, gae_serial
from slime.loss.returns_chunked import discounted_cumsum_chunked, gae_chunked
from slime.loss.sft import sft_token_losses
from slime.loss.value_loss import clipped_value_loss
from slime.loss.whitening import masked_mean_var, masked_whiten, whiten

__all__ = [
    "AdvantageEstimator", "CustomAdvantageFn", "CustomLossFn", "CustomTisFn", "KlType", "LossConfig", "LossType",
    "PgLossReducerFactory", "Reducer", "Reduction", "TisResult", "TisType", "cispo_policy_loss", "clipped_surrogate",
    "clipped_value_loss", "compute_advantages", "compute_loss", "compute_value_loss", "discounted_cumsum_chunked",
    "discounted_cumsum_serial", "entropy_from_logits", "gae_chunked", "gae_serial", "group_mean_baseline",
    "grpo_scores", "gspo_policy_loss", "icepop_tis", "kl_estimate", "kl_k1", "kl_k2", "kl_k3", "kl_low_var",
    "log_probs_and_entropy_from_logits", "log_probs_from_logits", "make_reducer", "masked_mean_var", "masked_whiten",
    "opsm_mask", "ppo_policy_loss", "raw_rewards", "rejection_tis", "resolve_loss_plugins", "rloo_scores",
    "sft_token_losses", "sum_of_sample_mean", "sum_of_tokens", "vanilla_tis", "whiten",
]
