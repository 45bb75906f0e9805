"""First-fit micro-batch packing: coverage, budget, first-fit order, CP budget, the micro-batch count helper."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import get_minimum_num_micro_batch_size, pack_micro_batches
from slime.types import ConfigError, ContractError

lengths_st = st.lists(st.integers(0, 120), max_size=80)


def naive_first_fit(lengths: list[int], cap: int) -> list[list[int]]:
    """The textbook O(n * bins) first fit, as the reference."""
    bins: list[list[int]] = []
    used: list[int] = []
    for i, size in enumerate(lengths):
        for b, total in enumerate(used):
            if total + size <= cap:
                bins[b].append(i)
                used[b] += size
                break
        else:
            bins.append([i])
            used.append(size)
    return bins


@given(lengths=lengths_st, budget=st.integers(1, 100), cp_size=st.integers(1, 3))
def test_plan_covers_every_sample_once_and_respects_the_budget(lengths, budget, cp_size):
    plan = pack_micro_batches(lengths, budget, cp_size=cp_size)
    assert sorted(i for mb in plan for i in mb) == list(range(len(lengths)))
    for mb in plan:
        assert mb == sorted(mb)
        assert sum(lengths[i] for i in mb) <= budget * cp_size or len(mb) == 1


@given(lengths=lengths_st, budget=st.integers(1, 100))
def test_matches_textbook_first_fit(lengths, budget):
    assert pack_micro_batches(lengths, budget) == naive_first_fit(lengths, budget)


@given(lengths=st.lists(st.integers(0, 10_000), max_size=300), budget=st.integers(500, 20_000))
def test_matches_textbook_first_fit_on_long_tails(lengths, budget):
    assert pack_micro_batches(lengths, budget) == naive_first_fit(lengths, budget)


def test_overlong_sample_gets_its_own_micro_batch_untruncated():
    assert pack_micro_batches([3, 50, 4, 10, 2], 10) == [[0, 2, 4], [1], [3]]
    assert pack_micro_batches([50, 0], 10) == [[0], [1]], "nothing joins an over-long micro-batch"


def test_cp_multiplies_the_budget():
    assert pack_micro_batches([6, 6, 6, 6], 6, cp_size=2) == [[0, 1], [2, 3]]
    assert get_minimum_num_micro_batch_size([6, 6, 6, 6], 6) == 4
    assert get_minimum_num_micro_batch_size([6, 6, 6, 6], 6, cp_size=2) == 2
    assert get_minimum_num_micro_batch_size([], 6) == 0


@pytest.mark.parametrize(("budget", "cp"), [(0, 1), (-5, 1), (4, 0), (True, 1), (2.5, 1)])
def test_bad_budget_names_the_flag(budget, cp):
    with pytest.raises(ConfigError, match="--max-tokens-per-gpu|--context-parallel-size"):
        pack_micro_batches([1], budget, cp_size=cp)


def test_negative_length_is_refused():
    with pytest.raises(ContractError, match=">= 0"):
        pack_micro_batches([1, -1], 4)
