"""Chunked parallel scan for discounted returns and GAE; equal to the serial forms in `returns`.

Time is cut into chunks of C steps. Inside a chunk the scan is one matmul with the [C, C] matrix
discount^(k - t) (k >= t); chunks are then chained backwards, so there are L / C serial steps instead
of L. It does not compute rewards or KL (see `token_advantage`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from slime.loss.packing import max_seqlen_of, packed_to_padded, padded_to_packed
from slime.loss.returns import gae_deltas_padded

DEFAULT_SCAN_CHUNK = 128
"""Chunk length of the parallel scan (slime uses 128 as well)."""


def reverse_discounted_scan_chunked(values: Tensor, discount: float, chunk_size: int = DEFAULT_SCAN_CHUNK) -> Tensor:
    """[B, L] -> [B, L]: out_t = x_t + discount * out_{t+1}, by chunks of `chunk_size` steps."""
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1 (got {chunk_size}).")
    batch, length = values.shape
    num_chunks = -(-length // chunk_size)
    padded = values.new_zeros(batch, num_chunks * chunk_size)
    padded[:, :length] = values
    chunks = padded.view(batch, num_chunks, chunk_size)
    steps = torch.arange(chunk_size, device=values.device)
    offsets = steps.unsqueeze(1) - steps.unsqueeze(0)  # [k, t] = k - t
    base = torch.tensor(discount, dtype=values.dtype, device=values.device)
    # Zero below the diagonal: torch.pow(0, 0) = 1 keeps discount = 0 exact on the diagonal.
    weights = torch.where(offsets >= 0, base.pow(offsets.clamp_min(0).to(values.dtype)), torch.zeros_like(base))
    local = chunks @ weights  # [B, n, C]: sum_{k >= t in chunk} discount^(k - t) x_k
    carry_scale = base.pow((chunk_size - steps).to(values.dtype))  # discount^(C - t)
    out = torch.empty_like(local)
    carry = values.new_zeros(batch)
    for n in range(num_chunks - 1, -1, -1):
        out[:, n] = local[:, n] + carry_scale * carry.unsqueeze(1)
        carry = out[:, n, 0]
    return out.view(batch, -1)[:, :length]


def discounted_cumsum_chunked(
    values: Tensor,
    cu_seqlens: Tensor,
    discount: float,
    max_seqlen: int | None = None,
    chunk_size: int = DEFAULT_SCAN_CHUNK,
) -> Tensor:
    """Per sample, G_t = sum_{k >= t} discount^(k - t) x_k, chunked; [T], [B+1] -> [T]."""
    padded = packed_to_padded(values, cu_seqlens, max_seqlen)
    scanned = reverse_discounted_scan_chunked(padded, discount, chunk_size)
    return padded_to_packed(scanned, cu_seqlens, values.shape[0])


def gae_chunked(
    rewards: Tensor,
    values: Tensor,
    cu_seqlens: Tensor,
    gamma: float,
    lambd: float,
    max_seqlen: int | None = None,
    chunk_size: int = DEFAULT_SCAN_CHUNK,
) -> tuple[Tensor, Tensor]:
    """GAE by chunked scan; same arguments and results as `returns.gae_serial` ([T] advantages, [T] returns)."""
    length = max_seqlen_of(cu_seqlens) if max_seqlen is None else max_seqlen
    deltas = gae_deltas_padded(
        packed_to_padded(rewards, cu_seqlens, length), packed_to_padded(values, cu_seqlens, length), gamma
    )
    scanned = reverse_discounted_scan_chunked(deltas, gamma * lambd, chunk_size)
    advantages = padded_to_packed(scanned, cu_seqlens, rewards.shape[0])
    return advantages, advantages + values
