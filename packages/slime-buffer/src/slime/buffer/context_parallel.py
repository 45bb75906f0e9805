"""Zigzag context-parallel split plan: which token ranges of one sequence each CP rank holds.

With `cp_size` ranks a sequence is padded to a multiple of `2 * cp_size` and cut into `2 * cp_size` equal
chunks; rank `r` holds chunks `r` and `2 * cp_size - 1 - r`, so every rank gets one early (cheap) and one
late (expensive) chunk of causal attention. This module only computes the plan (half-open ranges over the
padded sequence); slicing tensors is the trainer's job.
"""

from __future__ import annotations

from slime.types import ConfigError, ContractError


def _check(length: int, cp_size: int) -> None:
    if isinstance(cp_size, bool) or not isinstance(cp_size, int) or cp_size < 1:
        raise ConfigError(f"cp_size is {cp_size!r}; --context-parallel-size must be an int >= 1.")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ContractError(f"sequence length must be an int >= 0 (got {length!r}).")


def zigzag_padded_length(length: int, cp_size: int) -> int:
    """`length` rounded up to a multiple of `2 * cp_size` (unchanged when `cp_size == 1`: no split)."""
    _check(length, cp_size)
    if cp_size == 1:
        return length
    chunks = 2 * cp_size
    return -(-length // chunks) * chunks


def zigzag_cp_split(length: int, cp_size: int) -> list[list[tuple[int, int]]]:
    """Per CP rank, the `[start, end)` ranges of the padded sequence it holds, in sequence order.

    Positions `>= length` are padding. With `cp_size == 1` the single rank holds `[(0, length)]`.

    Example:
        >>> zigzag_cp_split(10, 2)   # padded to 12, chunks of 3
        [[(0, 3), (9, 12)], [(3, 6), (6, 9)]]
    """
    padded = zigzag_padded_length(length, cp_size)
    if cp_size == 1:
        return [[(0, length)]]
    chunk = padded // (2 * cp_size)
    last = 2 * cp_size - 1
    return [[(r * chunk, (r + 1) * chunk), ((last - r) * chunk, (last - r + 1) * chunk)] for r in range(cp_size)]


def zigzag_rank_tokens(length: int, cp_size: int, rank: int) -> list[int]:
    """The real (non-padding) token positions CP rank `rank` holds, ascending."""
    if not 0 <= rank < max(cp_size, 1):
        raise ContractError(f"rank {rank} is outside [0, cp_size={cp_size}).")
    return [p for start, end in zigzag_cp_split(length, cp_size)[rank] for p in range(start, min(end, length))]
