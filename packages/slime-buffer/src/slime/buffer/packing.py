"""Micro-batch packing under a token budget (`--use-dynamic-batch-size`, `--max-tokens-per-gpu`).

`pack_micro_batches` is one first-fit pass in sample order: each sample goes into the first micro-batch with
room for it, else opens a new one. The budget is `cp_size * max_tokens_per_gpu` tokens, since context
parallelism spreads each sequence over `cp_size` ranks. A sample longer than the budget gets a micro-batch
of its own and is never truncated. `get_minimum_num_micro_batch_size` is the count that trainers all-reduce
(max over DP ranks) before re-partitioning their samples with `balance_partitions`. This module neither
pads nor balances across ranks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from slime.types import ConfigError, ContractError


def _budget(max_tokens_per_gpu: int, cp_size: int) -> int:
    if isinstance(max_tokens_per_gpu, bool) or not isinstance(max_tokens_per_gpu, int) or max_tokens_per_gpu < 1:
        raise ConfigError(
            f"max_tokens_per_gpu is {max_tokens_per_gpu!r}; set --max-tokens-per-gpu to a positive token count."
        )
    if isinstance(cp_size, bool) or not isinstance(cp_size, int) or cp_size < 1:
        raise ConfigError(f"cp_size is {cp_size!r}; --context-parallel-size must be an int >= 1.")
    return max_tokens_per_gpu * cp_size


def _check_lengths(lengths: Sequence[int]) -> None:
    if lengths and min(lengths) < 0:
        raise ContractError(f"sample lengths must be >= 0 (got {min(lengths)}).")


def pack_micro_batches(lengths: Sequence[int], max_tokens_per_gpu: int, *, cp_size: int = 1) -> list[list[int]]:
    """First-fit `lengths` into micro-batches of at most `cp_size * max_tokens_per_gpu` tokens.

    Returns lists of sample indices, each list in increasing order, micro-batches in opening order. Every
    index appears exactly once. Only a micro-batch holding a single over-long sample exceeds the budget.

    Example:
        >>> pack_micro_batches([6, 5, 4, 3, 12], 10)
        [[0, 2], [1, 3], [4]]
    """
    cap = _budget(max_tokens_per_gpu, cp_size)
    _check_lengths(lengths)
    # `room` is each micro-batch's free tokens. `rec_room`/`rec_bin` hold its left-to-right maxima ("records"):
    # the first micro-batch with room >= s is the first record with room >= s, found by bisection since the
    # records' room strictly increases. Only the records between the changed one and the next need rescanning.
    room: list[int] = []
    bins: list[list[int]] = []
    rec_room: list[int] = []
    rec_bin: list[int] = []
    for i, size in enumerate(lengths):
        p = bisect_left(rec_room, size)
        if p == len(rec_room):
            left = cap - size if size <= cap else -1
            if not rec_room or left > rec_room[-1]:
                rec_room.append(left)
                rec_bin.append(len(room))
            room.append(left)
            bins.append([i])
            continue
        b = rec_bin[p]
        bins[b].append(i)
        left = room[b] - size
        room[b] = left
        _update_records(room, rec_room, rec_bin, p, b, left)
    return bins


def _update_records(room: list[int], rec_room: list[int], rec_bin: list[int], p: int, b: int, left: int) -> None:
    """Record `p` (micro-batch `b`) shrank to `left`: rebuild the records between records p-1 and p+1."""
    floor = rec_room[p - 1] if p else -2
    end = rec_bin[p + 1] if p + 1 < len(rec_bin) else len(room)
    best = left if left > floor else floor
    if end - b > 1:
        gap = room[b + 1 : end]
        if max(gap) > best:
            new_room, new_bin = ([left], [b]) if left > floor else ([], [])
            for j, r in enumerate(gap, start=b + 1):
                if r > best:
                    best = r
                    new_room.append(r)
                    new_bin.append(j)
            rec_room[p : p + 1] = new_room
            rec_bin[p : p + 1] = new_bin
            return
    if left > floor:
        rec_room[p] = left
    else:
        del rec_room[p], rec_bin[p]


def get_minimum_num_micro_batch_size(lengths: Sequence[int], max_tokens_per_gpu: int, *, cp_size: int = 1) -> int:
    """The number of micro-batches first-fit needs for `lengths` (0 for no samples).

    With dynamic batch size, every DP rank computes this for its samples, the ranks all-reduce the max, and
    each rank splits its samples into that many micro-batches with `balance_partitions(lengths, n)`, so all
    ranks run the same number of forward/backward passes.
    """
    return len(pack_micro_batches(lengths, max_tokens_per_gpu, cp_size=cp_size))
