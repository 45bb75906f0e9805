"""Example plugins for the seam tests, loaded by dotted path (`slime_loss_reference.plugin_examples:...`)."""

from __future__ import annotations

import torch


def mean_log_prob_loss(args, batch, logits, sum_of_sample_mean):
    """A custom loss: maximise the reduced log-prob; reports it as a metric."""
    value = -sum_of_sample_mean(batch["log_probs"])
    return value, {"custom": value.detach(), "had_logits": torch.tensor(float(logits is not None))}


def constant_advantage(args, rollout_data):
    """A custom advantage: every token gets its sample's raw reward; returns = 2 * advantages."""
    cu = rollout_data["cu_seqlens"]
    lengths = cu[1:] - cu[:-1]
    advantages = torch.repeat_interleave(rollout_data["rewards"].float(), lengths)
    rollout_data["advantages"] = advantages
    rollout_data["returns"] = 2 * advantages


def forgetful_advantage(args, rollout_data):
    """Breaks the contract: sets nothing."""


def halve_and_drop_first_token(args, pg_loss, train_log_probs, rollout_log_probs, loss_mask, **kwargs):
    """A custom TIS: halves the loss and removes token 0 from the mask."""
    mask = loss_mask.clone()
    mask[:1] = 0
    return pg_loss * 0.5, mask, {"my_ratio": torch.exp(train_log_probs - rollout_log_probs)}


def constant_divisor_reducer(cu_seqlens, loss_mask, sample_denominators, calculate_per_token_loss):
    """Dr.GRPO-style reducer: token sum divided by a constant 4 (the caller divides by the global count)."""
    return lambda values: (values * loss_mask).sum() / 4.0


def wrong_arity(args):
    """Cannot be a CustomLossFn."""
