"""Loss reducers over the packed response tokens of one micro-batch, with global denominators passed in.

Packed layout: B samples' response tokens concatenated into [T]; `cu_seqlens` [B+1] (int64) are offsets.
A reducer returns a micro-batch's share of the full-batch objective, so summing its result over
micro-batches and data-parallel ranks gives the full-batch value. It never calls a collective.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

Reducer = Callable[[Tensor], Tensor]
"""Maps per-token values [T] to this micro-batch's (globally normalised) scalar contribution."""


def sample_index(cu_seqlens: Tensor, num_tokens: int) -> Tensor:
    """[T] int64: the sample each packed token belongs to (no host sync: `num_tokens` is a shape)."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    samples = torch.arange(lengths.shape[0], device=cu_seqlens.device)
    return torch.repeat_interleave(samples, lengths, output_size=num_tokens)


def per_sample_sum(values: Tensor, cu_seqlens: Tensor) -> Tensor:
    """[T] -> [B]: the sum of each sample's tokens."""
    index = sample_index(cu_seqlens, values.shape[0]).to(values.device)
    out = torch.zeros(cu_seqlens.shape[0] - 1, dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)


def sum_of_tokens(values: Tensor, loss_mask: Tensor) -> Tensor:
    """sum_t m_t x_t over the micro-batch; [T], [T] -> scalar."""
    return (values * loss_mask.to(values.dtype)).sum()


def sample_mean_weights(loss_mask: Tensor, cu_seqlens: Tensor, sample_denominators: Tensor) -> Tensor:
    """[T] per-token weights m_t / max(1, D_i(t)), so a per-sample mean sum is one weighted token sum."""
    inverse = 1 / sample_denominators.clamp_min(1)
    index = sample_index(cu_seqlens.to(loss_mask.device), loss_mask.shape[0]).to(inverse.device)
    return loss_mask.to(inverse.dtype) * inverse[index]


def sum_of_sample_mean(values: Tensor, loss_mask: Tensor, cu_seqlens: Tensor, sample_denominators: Tensor) -> Tensor:
    """sum_i (sum_t m_it x_it) / max(1, D_i); [T], [T], [B+1], [B] -> scalar.

    `D_i` is the loss-mask token count of sample i's whole rollout (usually the sample itself), so a
    sample split across micro-batches or context-parallel ranks is still divided by its full count.
    """
    weights = sample_mean_weights(loss_mask, cu_seqlens, sample_denominators.to(values.dtype))
    return (values * weights).sum()


def _safe_divisor(denominator: Tensor | float) -> Tensor | float:
    # An all-masked step would divide by zero; its numerators are zero too, so 1 gives the right 0.
    if isinstance(denominator, Tensor):
        return denominator.clamp_min(1)
    return max(float(denominator), 1.0)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Reduction:
    """One micro-batch's layout plus the step's global denominators: builds reducers for any mask."""

    cu_seqlens: Tensor
    """[B+1] int64 offsets of the samples' response tokens."""
    sample_denominators: Tensor
    """[B] loss-mask tokens of each sample's whole rollout (clamped to >= 1 when used)."""
    num_global_tokens: Tensor | float
    """Loss-mask tokens of the whole step over all ranks (per-token mode)."""
    num_global_samples: Tensor | float
    """Samples (rollouts) of the whole step over all ranks (per-sample mode)."""
    calculate_per_token_loss: bool = False
    """Per-token mean instead of slime's default mean over samples of token means."""

    @property
    def divisor(self) -> Tensor | float:
        """The global denominator a micro-batch sum is divided by."""
        return _safe_divisor(self.num_global_tokens if self.calculate_per_token_loss else self.num_global_samples)

    def token_weights(self, loss_mask: Tensor, dtype: torch.dtype) -> Tensor:
        """[T] weights w with the reduced value = sum_t w_t x_t: m_t / D_i (per-sample) or m_t, over the divisor."""
        divisor = self.divisor
        if isinstance(divisor, Tensor):
            divisor = divisor.to(device=loss_mask.device, dtype=dtype)
        if self.calculate_per_token_loss:
            return loss_mask.to(dtype) / divisor
        return sample_mean_weights(loss_mask, self.cu_seqlens, self.sample_denominators.to(dtype)) / divisor

    def reducer(self, loss_mask: Tensor) -> Reducer:
        """x [T] -> this micro-batch's share of the global mean of x over `loss_mask` tokens."""
        # Weights (mask, 1/D_i and 1/divisor folded together) are built once per dtype, so every
        # reduction is one multiply and one sum, and float64 inputs keep float64 weights.
        cache: dict[torch.dtype, Tensor] = {}

        def reduce(values: Tensor) -> Tensor:
            # bf16/fp16 values are reduced in float32: 1/D_i and long sums need more than 8 mantissa bits.
            dtype = torch.promote_types(values.dtype, torch.float32)
            weights = cache.get(dtype)
            if weights is None:
                weights = cache[dtype] = self.token_weights(loss_mask, dtype)
            return (values.to(dtype) * weights).sum()

        return reduce


def make_reducer(
    *,
    loss_mask: Tensor,
    cu_seqlens: Tensor,
    sample_denominators: Tensor,
    num_global_tokens: Tensor | float,
    num_global_samples: Tensor | float,
    calculate_per_token_loss: bool,
) -> Reducer:
    """The default global reducer: per-sample mean (slime's default) or per-token mean.

    Per-sample: x -> sum_of_sample_mean(x) / num_global_samples. Per-token: x -> sum_of_tokens(x) /
    num_global_tokens. Summed over micro-batches and ranks, both give the full-batch mean.
    """
    reduction = Reduction(
        cu_seqlens=cu_seqlens,
        sample_denominators=sample_denominators,
        num_global_tokens=num_global_tokens,
        num_global_samples=num_global_samples,
        calculate_per_token_loss=calculate_per_token_loss,
    )
    return reduction.reducer(loss_mask)
