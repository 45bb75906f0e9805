"""Hypothesis strategies for ragged packed batches, and their conversion to the packed tensor layout."""

from __future__ import annotations

import dataclasses
import random

import torch
from hypothesis import strategies as st

REWARD_TIES = [0.0, 1.0, 0.5]  # drawn often so that zero-variance groups and ties are common
LOG_RATIO_RANGE = 15.0  # "extreme" but finite in float32 after exp


@dataclasses.dataclass
class Batch:
    """Per-sample Python lists (the reference's view) of one ragged batch."""

    group_ids: list[int]
    rewards: list[float]
    masks: list[list[int]]
    log_probs: list[list[float]]
    old_log_probs: list[list[float]]
    ref_log_probs: list[list[float]]
    rollout_log_probs: list[list[float]]
    values: list[list[float]]
    advantages: list[list[float]]

    @property
    def lengths(self) -> list[int]:
        return [len(m) for m in self.masks]

    def cu_seqlens(self) -> torch.Tensor:
        cu = [0]
        for n in self.lengths:
            cu.append(cu[-1] + n)
        return torch.tensor(cu, dtype=torch.long)

    def packed(self, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        rows = getattr(self, name)
        return torch.tensor([x for row in rows for x in row], dtype=dtype)

    def denominators(self) -> list[float]:
        return [float(max(1, sum(m))) for m in self.masks]


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)


def _add(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[x + y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]


@st.composite
def batches(draw: st.DrawFn, max_groups: int = 4, max_group_size: int = 4, max_len: int = 7, extreme: bool = True):
    sizes = draw(st.lists(st.integers(1, max_group_size), min_size=1, max_size=max_groups))
    raw_ids = draw(st.lists(st.integers(-1000, 1000), min_size=len(sizes), max_size=len(sizes), unique=True))
    group_ids = [g for g, n in zip(raw_ids, sizes, strict=True) for _ in range(n)]
    order = draw(st.permutations(range(len(group_ids))))  # groups need not be contiguous
    group_ids = [group_ids[i] for i in order]
    num = len(group_ids)
    rewards = [draw(st.one_of(st.sampled_from(REWARD_TIES), _floats(-3, 3))) for _ in range(num)]
    lengths = draw(st.lists(st.integers(0, max_len), min_size=num, max_size=num))
    # Structure (groups, lengths, masks, rewards) is drawn by Hypothesis; per-token floats come from a drawn
    # seed, which keeps examples cheap to generate while still varying them.
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    mask_density = draw(st.sampled_from([0.0, 0.5, 0.8, 1.0]))
    masks = [[1 if rng.random() < mask_density else 0 for _ in range(n)] for n in lengths]
    spread = draw(st.sampled_from([0.1, 1.0, LOG_RATIO_RANGE])) if extreme else 1.0

    def per_token(lo: float, hi: float) -> list[list[float]]:
        return [[rng.uniform(lo, hi) for _ in m] for m in masks]

    log_probs = per_token(-6, 0)
    deltas = per_token(-spread, spread)
    old = _add(log_probs, deltas)
    return Batch(
        group_ids=group_ids,
        rewards=rewards,
        masks=masks,
        log_probs=log_probs,
        old_log_probs=old,
        ref_log_probs=_add(log_probs, per_token(-2, 2)),
        rollout_log_probs=_add(old, per_token(-1.5, 1.5)),
        values=per_token(-2, 2),
        advantages=per_token(-3, 3),
    )
