"""`compute_loss` (actor) and `compute_value_loss` (critic): one micro-batch's share of the step objective.

Each result is already divided by the GLOBAL denominators (samples or tokens of the whole step), so the
sum over micro-batches and data-parallel ranks is the full-batch objective; metrics are detached scalars
reduced the same way, so they SUM too. No collectives, no host syncs.
Total actor loss: pg_loss - entropy_coef * entropy_loss + kl_loss_coef * kl_loss (with use_kl_loss).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from slime.loss.config import LossConfig
from slime.loss.kl import kl_estimate
from slime.loss.off_policy import TisResult, opsm_mask
from slime.loss.plugins import LossPlugins, plugins_for
from slime.loss.ratio import token_log_ratio
from slime.loss.reduce import Reducer, Reduction
from slime.loss.registry import POLICY_LOSSES, TIS_FUNCTIONS
from slime.loss.sft import sft_token_losses
from slime.loss.value_loss import clipped_value_loss


def _masked_diff(a: Tensor, b: Tensor, loss_mask: Tensor) -> Tensor:
    """a - b on masked tokens, 0 elsewhere (values under the mask may be garbage, even inf)."""
    return torch.where(loss_mask.bool(), a - b, torch.zeros_like(a))


def _apply_tis(
    config: LossConfig, plugins: LossPlugins, pg_losses: Tensor, batch: Mapping[str, Tensor | None]
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Weight the per-token pg loss for the train/rollout mismatch; returns (losses, pg mask, token metrics)."""
    old_log_probs, rollout_log_probs = batch["old_log_probs"], batch["rollout_log_probs"]
    loss_mask = batch["loss_mask"]
    assert old_log_probs is not None and loss_mask is not None  # required arguments of compute_loss
    if rollout_log_probs is None:
        raise ValueError("use_tis / custom_tis_function_path need `rollout_log_probs` [T]; pass the engine's.")
    if plugins.custom_tis is not None:
        extras = {k: v for k in ("cu_seqlens", "log_probs", "advantages") if (v := batch[k]) is not None}
        losses, pg_mask, metrics = plugins.custom_tis(
            config, pg_losses, old_log_probs, rollout_log_probs, loss_mask, **extras
        )
        return losses, pg_mask, dict(metrics)
    result: TisResult = TIS_FUNCTIONS[config.tis_type](
        old_log_probs, rollout_log_probs, loss_mask, low=config.tis_clip_low, high=config.tis_clip
    )
    metrics = {"tis": result.ratio, "tis_clipfrac": result.is_clipped, "tis_abs": (result.ratio - 1).abs()}
    return pg_losses * result.weights, result.loss_mask, metrics


def _policy_terms(
    config: LossConfig, plugins: LossPlugins, batch: Mapping[str, Tensor | None], reduction: Reduction
) -> tuple[Tensor, dict[str, Tensor]]:
    """The pg loss (after OPSM and TIS) reduced with the pg reducer, and its per-token metrics."""
    log_probs, old_log_probs, advantages = batch["log_probs"], batch["old_log_probs"], batch["advantages"]
    loss_mask, cu_seqlens = batch["loss_mask"], reduction.cu_seqlens
    assert log_probs is not None and old_log_probs is not None and advantages is not None and loss_mask is not None
    losses, clipfrac = POLICY_LOSSES[config.advantage_estimator](
        log_probs, old_log_probs, advantages, loss_mask, cu_seqlens,
        eps_clip=config.eps_clip, eps_clip_high=config.clip_high, eps_clip_c=config.eps_clip_c,
    )  # fmt: skip
    token_metrics = {"pg_clipfrac": clipfrac, "ppo_kl": _masked_diff(old_log_probs, log_probs, loss_mask)}
    if config.use_opsm:
        keep = opsm_mask(log_probs, old_log_probs, advantages, loss_mask, cu_seqlens, delta=config.opsm_delta)
        losses, token_metrics["opsm_clipfrac"] = losses * keep, 1 - keep
    pg_mask = loss_mask
    if config.use_tis or plugins.custom_tis is not None:
        losses, pg_mask, tis_metrics = _apply_tis(config, plugins, losses, batch)
        token_metrics |= tis_metrics
        token_metrics["ois"] = torch.exp(token_log_ratio(log_probs, old_log_probs, loss_mask))
    if plugins.pg_loss_reducer is not None:
        micro_sum = plugins.pg_loss_reducer(
            cu_seqlens, pg_mask, reduction.sample_denominators, reduction.calculate_per_token_loss
        )
        return micro_sum(losses) / reduction.divisor, token_metrics
    return reduction.reducer(pg_mask)(losses), token_metrics


def _regularizers(
    config: LossConfig, batch: Mapping[str, Tensor | None], reducer: Reducer
) -> tuple[Tensor | float, dict[str, Tensor]]:
    """- entropy_coef * H + kl_loss_coef * KL (each reduced), and their reduced metrics."""
    log_probs, loss_mask, entropy = batch["log_probs"], batch["loss_mask"], batch["entropy"]
    assert log_probs is not None and loss_mask is not None
    total: Tensor | float = 0.0
    metrics: dict[str, Tensor] = {}
    if config.entropy_coef != 0 and entropy is None:
        raise ValueError(
            f"entropy_coef={config.entropy_coef} needs `entropy` [T]; get it from log_probs_and_entropy_from_logits."
        )
    if entropy is not None:
        entropy_loss = reducer(entropy)
        metrics["entropy_loss"] = entropy_loss
        if config.entropy_coef != 0:  # skip the entropy backward entirely when unused (as slime does)
            total = total - config.entropy_coef * entropy_loss
    if config.use_kl_loss:
        ref_log_probs, old_log_probs = batch["ref_log_probs"], batch["old_log_probs"]
        if ref_log_probs is None:
            raise ValueError("use_kl_loss needs `ref_log_probs` [T]; pass the reference model's log-probs.")
        # Masked tokens get delta = 0, i.e. an exact zero KL, whatever their log-probs.
        keep = loss_mask.bool()
        kl = kl_estimate(
            torch.where(keep, log_probs, torch.zeros_like(log_probs)),
            torch.where(keep, ref_log_probs, torch.zeros_like(ref_log_probs)),
            config.kl_loss_type,
        )
        if config.use_unbiased_kl:
            assert old_log_probs is not None
            kl = kl * torch.exp(token_log_ratio(log_probs, old_log_probs, loss_mask))
        kl_loss = reducer(kl)
        metrics["kl_loss"] = kl_loss
        total = total + config.kl_loss_coef * kl_loss
    return total, metrics


def _policy_loss(
    config: LossConfig,
    plugins: LossPlugins,
    batch: Mapping[str, Tensor | None],
    reduction: Reduction,
    reducer: Reducer,
) -> tuple[Tensor, dict[str, Tensor]]:
    """pg_loss - entropy_coef * H + kl_loss_coef * KL with all metrics (loss_type='policy_loss')."""
    pg_loss, token_metrics = _policy_terms(config, plugins, batch, reduction)
    extra, metrics = _regularizers(config, batch, reducer)
    loss = pg_loss + extra
    metrics |= {name: reducer(value.detach()) for name, value in token_metrics.items()}
    old_log_probs, rollout_log_probs, loss_mask = batch["old_log_probs"], batch["rollout_log_probs"], batch["loss_mask"]
    if rollout_log_probs is not None:
        assert old_log_probs is not None and loss_mask is not None
        diff = _masked_diff(old_log_probs, rollout_log_probs, loss_mask).abs()
        metrics["train_rollout_logprob_abs_diff"] = reducer(diff.detach())
    metrics |= {"pg_loss": pg_loss, "loss": loss}
    return loss, {name: value.detach() for name, value in metrics.items()}


def compute_loss(
    config: LossConfig,
    *,
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    sample_denominators: Tensor,
    num_global_tokens: Tensor | float,
    num_global_samples: Tensor | float,
    ref_log_probs: Tensor | None = None,
    rollout_log_probs: Tensor | None = None,
    entropy: Tensor | None = None,
    values: Tensor | None = None,
    old_values: Tensor | None = None,
    returns: Tensor | None = None,
    logits: Tensor | None = None,
    plugins: LossPlugins | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The actor loss of one micro-batch, already divided by the global denominators.

    Args:
        config: loss flags. log_probs: [T] current log-probs (with grad). old_log_probs, advantages: [T].
        loss_mask: [T] 0/1. cu_seqlens: [B+1] int64. sample_denominators: [B] loss-mask tokens of each
            sample's whole rollout (clamped to >= 1).
        num_global_tokens / num_global_samples: loss-mask tokens / samples of the whole step on all ranks.
        ref_log_probs: [T] (use_kl_loss). rollout_log_probs: [T] (TIS, mismatch metric). entropy: [T].
        values, old_values, returns, logits: passed through to a custom loss only (the critic uses
            `compute_value_loss`). plugins: resolved plugins; None resolves the config's paths now.

    Returns:
        (scalar loss, detached scalar metrics that SUM across micro-batches; names in the README).
    """
    plugins = plugins_for(config, plugins)
    batch: dict[str, Tensor | None] = {
        "log_probs": log_probs, "old_log_probs": old_log_probs, "advantages": advantages, "loss_mask": loss_mask,
        "cu_seqlens": cu_seqlens, "sample_denominators": sample_denominators, "ref_log_probs": ref_log_probs,
        "rollout_log_probs": rollout_log_probs, "entropy": entropy, "values": values, "old_values": old_values,
        "returns": returns,
    }  # fmt: skip
    reduction = Reduction(cu_seqlens=cu_seqlens, sample_denominators=sample_denominators,
                          num_global_tokens=num_global_tokens, num_global_samples=num_global_samples,
                          calculate_per_token_loss=config.calculate_per_token_loss)  # fmt: skip
    reducer = reduction.reducer(loss_mask)
    if config.loss_type == "sft_loss":
        loss = reducer(sft_token_losses(log_probs, loss_mask))
        return loss, {"loss": loss.detach()}
    if config.loss_type == "custom_loss":
        assert plugins.custom_loss is not None  # LossConfig requires the path
        loss, custom_metrics = plugins.custom_loss(config, batch, logits, reducer)
        return loss, {name: value.detach() for name, value in custom_metrics.items()}
    return _policy_loss(config, plugins, batch, reduction, reducer)


def compute_value_loss(
    config: LossConfig,
    *,
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    sample_denominators: Tensor,
    num_global_tokens: Tensor | float,
    num_global_samples: Tensor | float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The critic loss of one micro-batch (clipped, no 1/2), divided by the global denominators.

    Args:
        values: [T] current critic values (with grad). old_values: [T] values before the update.
        returns: [T] from `compute_advantages`. The rest as in `compute_loss`.

    Returns:
        (scalar loss, detached metrics `value_loss`, `value_clipfrac`).
    """
    reducer = Reduction(
        cu_seqlens=cu_seqlens,
        sample_denominators=sample_denominators,
        num_global_tokens=num_global_tokens,
        num_global_samples=num_global_samples,
        calculate_per_token_loss=config.calculate_per_token_loss,
    ).reducer(loss_mask)
    losses, clipfrac = clipped_value_loss(values, old_values, returns, config.value_clip)
    loss = reducer(losses)
    return loss, {"value_loss": loss.detach(), "value_clipfrac": reducer(clipfrac.detach())}
