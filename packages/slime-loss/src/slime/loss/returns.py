"""Discounted returns and GAE on packed responses, serial form (one vectorised step per time position).

This is the reference the chunked scan in `returns_chunked` must equal; it is also fine for short
responses. It computes no rewards or KL (see `token_advantage`) and does not mask: masked tokens stay
in the time chain, as in slime.
"""

from __future__ import annotations

from torch import Tensor

from slime.loss.packing import packed_to_padded, padded_to_packed


def reverse_discounted_scan_padded(values: Tensor, discount: float) -> Tensor:
    """[B, L] -> [B, L]: out_t = x_t + discount * out_{t+1}, serial over t (zero after the end)."""
    out = values.clone()
    for t in range(values.shape[1] - 2, -1, -1):
        out[:, t] = out[:, t] + discount * out[:, t + 1]
    return out


def discounted_cumsum_serial(
    values: Tensor, cu_seqlens: Tensor, discount: float, max_seqlen: int | None = None
) -> Tensor:
    """Per sample, G_t = sum_{k >= t} discount^(k - t) x_k; [T], [B+1] -> [T]."""
    padded = packed_to_padded(values, cu_seqlens, max_seqlen)
    return padded_to_packed(reverse_discounted_scan_padded(padded, discount), cu_seqlens, values.shape[0])


def gae_deltas_padded(rewards: Tensor, values: Tensor, gamma: float) -> Tensor:
    """[B, L] TD residuals delta_t = r_t + gamma * V_{t+1} - V_t, with V = 0 after the end (zero padding)."""
    next_values = values.new_zeros(values.shape)
    next_values[:, :-1] = values[:, 1:]
    return rewards + gamma * next_values - values


def gae_serial(
    rewards: Tensor,
    values: Tensor,
    cu_seqlens: Tensor,
    gamma: float,
    lambd: float,
    max_seqlen: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation, serial reference.

    Args:
        rewards: [T] token rewards (KL penalty plus the sequence reward on the last token).
        values: [T] critic values V_t.
        cu_seqlens: [B+1] int64 offsets of the samples in the packed layout.
        gamma, lambd: discount and GAE lambda.
        max_seqlen: longest sample (skips reading `cu_seqlens` on the host).

    Returns:
        (advantages [T] = sum_l (gamma lambd)^l delta_{t+l}, returns [T] = advantages + values).
    """
    deltas = gae_deltas_padded(
        packed_to_padded(rewards, cu_seqlens, max_seqlen), packed_to_padded(values, cu_seqlens, max_seqlen), gamma
    )
    advantages = padded_to_packed(reverse_discounted_scan_padded(deltas, gamma * lambd), cu_seqlens, rewards.shape[0])
    return advantages, advantages + values
