"""Masked advantage whitening: (A - mu) / sqrt(var + 1e-8) with mu, var over the masked tokens.

The statistics are either computed here over the tokens given (the whole rollout batch) or passed in
(when a caller has reduced them across ranks itself). It never communicates.
"""

from __future__ import annotations

from torch import Tensor

WHITEN_EPS = 1e-8
"""Added to the variance before the square root (slime's value)."""


def masked_mean_var(values: Tensor, loss_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and Bessel-corrected variance of `values` over tokens with mask 1; [T], [T] -> (scalar, scalar).

    var = (sum m x^2 / N - mu^2) * N / (N - 1) with N = sum m; N <= 1 gives the uncorrected value.
    """
    mask = loss_mask.to(values.dtype)
    count = mask.sum()
    safe_count = count.clamp_min(1)
    mean = (values * mask).sum() / safe_count
    centred = (values - mean) * mask
    # Centred second moment: the textbook E[x^2] - mu^2 loses all precision when |mu| >> std.
    biased = (centred * centred).sum() / safe_count
    return mean, biased * safe_count / (count - 1).clamp_min(1)


def whiten(values: Tensor, mean: Tensor | float, var: Tensor | float, eps: float = WHITEN_EPS) -> Tensor:
    """(x - mean) / sqrt(var + eps) for every token; the statistics come from the caller."""
    return (values - mean) / (var + eps) ** 0.5


def masked_whiten(values: Tensor, loss_mask: Tensor, eps: float = WHITEN_EPS) -> Tensor:
    """Whiten every token with the masked mean and unbiased variance of `values`; [T], [T] -> [T]."""
    mean, var = masked_mean_var(values, loss_mask)
    return whiten(values, mean, var, eps)
