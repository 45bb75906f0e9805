"""Clipped critic loss per token: max((V_clip - R)^2, (V - R)^2) with V_clip = V_old + clip(V - V_old, -c, c).

There is no 1/2 factor (slime's convention). Masking and reduction happen in `reduce`.
"""

from __future__ import annotations

from torch import Tensor


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, value_clip: float
) -> tuple[Tensor, Tensor]:
    """[T] values, old values and returns -> (losses [T], clipfrac [T]: whether the clipped term won)."""
    clipped_values = old_values + (values - old_values).clamp(-value_clip, value_clip)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    return unclipped_loss.maximum(clipped_loss), (clipped_loss > unclipped_loss).to(values.dtype)
