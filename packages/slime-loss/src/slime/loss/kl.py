"""Per-token KL estimators between a policy and a base policy, from the sampled tokens' log-probs.

With delta = logp - logp_base: k1 = delta, k2 = delta^2 / 2, k3 = exp(-delta) - 1 + delta and
low_var_kl = k3 clamped to [-10, 10]. They do no masking or reduction (see `reduce`).
"""

from __future__ import annotations

from torch import Tensor

LOW_VAR_KL_BOUND = 10.0
"""low_var_kl clamps the k3 estimate to [-10, 10] to bound the variance of rare huge ratios."""


def kl_k1(log_probs: Tensor, base_log_probs: Tensor) -> Tensor:
    """k1 = logp - logp_base (unbiased, can be negative); [T], [T] -> [T]."""
    return log_probs - base_log_probs


def kl_k2(log_probs: Tensor, base_log_probs: Tensor) -> Tensor:
    """k2 = (logp - logp_base)^2 / 2 (biased, non-negative); [T], [T] -> [T]."""
    delta = log_probs - base_log_probs
    return delta * delta / 2


def kl_k3(log_probs: Tensor, base_log_probs: Tensor) -> Tensor:
    """k3 = exp(-delta) - 1 + delta (unbiased, non-negative); [T], [T] -> [T]."""
    delta = log_probs - base_log_probs
    # expm1 keeps exact zeros and precision for tiny delta, where exp(-d) - 1 would cancel.
    return (-delta).expm1() + delta


def kl_low_var(log_probs: Tensor, base_log_probs: Tensor) -> Tensor:
    """low_var_kl = clamp(k3, -10, 10); [T], [T] -> [T]."""
    return kl_k3(log_probs, base_log_probs).clamp(-LOW_VAR_KL_BOUND, LOW_VAR_KL_BOUND)


def kl_estimate(log_probs: Tensor, ref_log_probs: Tensor, kind: str) -> Tensor:
    """The `kind` estimator (k1, k2, k3 or low_var_kl) of KL(pi || pi_ref) per token; [T], [T] -> [T].

    Raises:
        ValueError: unknown `kind`.
    """
    from slime.loss.registry import KL_ESTIMATORS  # the registry imports this module

    try:
        estimator = KL_ESTIMATORS[kind]
    except KeyError:
        raise ValueError(f"unknown KL estimator {kind!r}; choose one of {sorted(KL_ESTIMATORS)}.") from None
    return estimator(log_probs, ref_log_probs)
