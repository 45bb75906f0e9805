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


def sum_of_sample_mean(values: Tensor, loss_mask: Tensor, cu_seqlens: Tensor, sample_denominators: Tensor) -> Tensor:
    """sum_i (sum_t m_it x_it) / max(1, D_i); [T], [T], [B+1], [B] -> scalar.

    `D_i` is the loss-mask token count of sample i's whole rollout (usually the sample itself), so a
    sample split across micro-batches or context-parallel ranks is still divided by its full count.
    """
    masked = values * loss_mask.to(values.dtype)
    sums = per_sample_sum(masked, cu_seqlens)
    return (sums / sample_denominators.to(sums.dtype).clamp_min(1)).sum()


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

    def micro_batch_sum(self, values: Tensor, loss_mask: Tensor) -> Tensor:
        """The micro-batch sum before the global division (sum_of_tokens or sum_of_sample_mean)."""
        if self.calculate_per_token_loss:
            return sum_of_tokens(values, loss_mask)
        return sum_of_sample_mean(values, loss_mask, self.cu_seqlens, self.sample_denominators)

    def reducer(self, loss_mask: Tensor) -> Reducer:
        """x [T] -> this micro-batch's share of the global mean of x over `loss_mask` tokens."""
        return lambda values: self.micro_batch_sum(values, loss_mask) / self.divisor


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
