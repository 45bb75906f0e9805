"""Conversion between the packed response layout [T] (with `cu_seqlens` [B+1]) and a padded [B, L] layout.

Scans along time (returns, GAE) run on the padded layout so that every step is vectorised over samples.
Padding is zero, which is exactly "no reward and V = 0 after the end of a response".
"""

from __future__ import annotations

import torch
from torch import Tensor

from slime.loss.reduce import sample_index


def max_seqlen_of(cu_seqlens: Tensor) -> int:
    """The longest sample's length as a Python int.

    The padded shape needs a host integer; this is a host read of `cu_seqlens` (free when it is on CPU,
    as trainers build it from Python lengths). Pass `max_seqlen` to the scans to skip it.
    """
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    return int(lengths.max()) if lengths.numel() else 0


def packed_positions(cu_seqlens: Tensor, num_tokens: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(row, column) of every packed token in the padded layout, each [T] int64."""
    cu = cu_seqlens.to(device)
    rows = sample_index(cu, num_tokens)
    cols = torch.arange(num_tokens, device=device) - cu[rows]
    return rows, cols


def packed_to_padded(values: Tensor, cu_seqlens: Tensor, max_seqlen: int | None = None) -> Tensor:
    """[T] -> [B, L] with zeros after each sample's end; L = `max_seqlen` or the longest sample."""
    length = max_seqlen_of(cu_seqlens) if max_seqlen is None else max_seqlen
    rows, cols = packed_positions(cu_seqlens, values.shape[0], values.device)
    out = values.new_zeros(cu_seqlens.shape[0] - 1, length)
    out[rows, cols] = values
    return out


def padded_to_packed(padded: Tensor, cu_seqlens: Tensor, num_tokens: int) -> Tensor:
    """[B, L] -> [T]: the inverse of `packed_to_padded`."""
    rows, cols = packed_positions(cu_seqlens, num_tokens, padded.device)
    return padded[rows, cols]


def broadcast_to_tokens(per_sample: Tensor, cu_seqlens: Tensor, num_tokens: int) -> Tensor:
    """[B] -> [T]: every token of sample i gets `per_sample[i]`."""
    return per_sample[sample_index(cu_seqlens.to(per_sample.device), num_tokens)]
