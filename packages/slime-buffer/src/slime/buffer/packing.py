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


def token_budget(max_tokens_per_gpu: int, cp_size: int = 1) -> int:
    """The per-micro-batch token cap `cp_size * max_tokens_per_gpu`; `ConfigError` names a bad flag."""
    if isinstance(max_tokens_per_gpu, bool) or not isinstance(max_tokens_per_gpu, int) or max_tokens_per_gpu < 1:
        raise ConfigError(
            f"max_tokens_per_gpu is {max_tokens_per_gpu!r}; set --max-tokens-per-gpu to a positive token count."
        )
    if isinstance(cp_size, bool) or not isinstance(cp_size, int) or cp_size < 1:
        raise ConfigError(f"cp_size is {cp_size!r}; --context-parallel-size must be an int >= 1.")
    return max_tokens_per_gpu * cp_size


def check_lengths(lengths: Sequence[int]) -> None:
    """Raise `ContractError` on a negative length."""
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
    cap = token_budget(max_tokens_per_gpu, cp_size)
    check_lengths(lengths)
    return first_fit(lengths, cap)[0]


def first_fit(lengths: Sequence[int], cap: int) -> tuple[list[list[int]], list[int]]:
    """First-fit under `cap` tokens (unchecked); returns the micro-batches and their token totals."""
    # `room` is each micro-batch's free tokens (-1: over-long, closed). `rec_room`/`rec_bin` hold its
    # left-to-right maxima ("records"): the first micro-batch with room >= s is the first record with room >= s,
    # found by bisection since the records' room strictly increases. When a record shrinks, only the micro-batches
    # up to the next record can become records. Inlined for speed: this loop runs once per sample.
    room: list[int] = []
    bins: list[list[int]] = []
    rec_room: list[int] = []
    rec_bin: list[int] = []
    for i, size in enumerate(lengths):
        p = bisect_left(rec_room, size)
        num_records = len(rec_room)
        if p == num_records:
            left = cap - size if size <= cap else -1
            if not num_records or left > rec_room[-1]:
                rec_room.append(left)
                rec_bin.append(len(room))
            room.append(left)
            bins.append([i])
            continue
        b = rec_bin[p]
        bins[b].append(i)
        left = room[b] - size
        room[b] = left
        floor = rec_room[p - 1] if p else -2
        end = rec_bin[p + 1] if p + 1 < num_records else len(room)
        best = left if left > floor else floor
        if end - b > 1 and max(room[b + 1 : end]) > best:
            new_room, new_bin = ([left], [b]) if left > floor else ([], [])
            for j in range(b + 1, end):
                if room[j] > best:
                    best = room[j]
                    new_room.append(best)
                    new_bin.append(j)
            rec_room[p : p + 1] = new_room
            rec_bin[p : p + 1] = new_bin
        elif left > floor:
            rec_room[p] = left
        else:
            del rec_room[p], rec_bin[p]
    totals = [cap - r if r >= 0 else lengths[mb[0]] for r, mb in zip(room, bins, strict=True)]
    return bins, totals


def get_minimum_num_micro_batch_size(lengths: Sequence[int], max_tokens_per_gpu: int, *, cp_size: int = 1) -> int:
    """The number of micro-batches first-fit needs for `lengths` (0 for no samples).

    With dynamic batch size, every DP rank computes this for its samples, the ranks all-reduce the max, and
    each rank splits its samples into that many micro-batches with `balance_partitions(lengths, n)`, so all
    ranks run the same number of forward/backward passes.
    """
    return len(pack_micro_batches(lengths, max_tokens_per_gpu, cp_size=cp_size))
