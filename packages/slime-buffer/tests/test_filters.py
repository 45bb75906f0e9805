"""Filter plugins: slime's paths resolve against the seam Protocols; reward-std filter vs a float64 reference."""

from __future__ import annotations

import math
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import DynamicFilterOutput, check_reward_nonzero_std_with_fallback, group_reward_std
from slime.types import BufferFilterFn, DynamicFilterFn, Sample, resolve

ARGS = types.SimpleNamespace(reward_key=None)


def group(rewards: list) -> list[Sample]:
    return [Sample(index=i, reward=r) for i, r in enumerate(rewards)]


def naive_std(xs: list[float]) -> float:
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def test_module_paths_resolve_against_the_protocols():
    keep = resolve(
        "slime.buffer.filters.check_reward_nonzero_std", DynamicFilterFn, flag="--dynamic-sampling-filter-path"
    )
    assert keep(ARGS, group([0.0, 1.0])) is True
    pop = resolve("slime.buffer.filters:pop_first", BufferFilterFn, flag="--buffer-filter-path")
    assert pop(None, None, [[Sample()]], 1) == [[Sample()]]
    resolve("slime.buffer.filters.check_reward_nonzero_std_with_fallback", DynamicFilterFn)


rewards_st = st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=1, max_size=16)


@given(rewards=rewards_st)
def test_keep_iff_rewards_differ_and_std_matches_reference(rewards):
    from slime.buffer.filters import check_reward_nonzero_std

    kept = check_reward_nonzero_std(ARGS, group(rewards))
    assert kept == (len(set(rewards)) > 1)
    if len(rewards) > 1:
        assert group_reward_std(group(rewards)) == pytest.approx(naive_std(rewards), rel=1e-9, abs=1e-9)


def test_single_sample_groups_and_dict_rewards():
    from slime.buffer.filters import check_reward_nonzero_std

    assert check_reward_nonzero_std(ARGS, group([1.0])) is False
    args = types.SimpleNamespace(reward_key="acc")
    assert check_reward_nonzero_std(args, group([{"acc": 1.0, "len": 3.0}, {"acc": 1.0, "len": 5.0}])) is False
    assert check_reward_nonzero_std(args, group([{"acc": 1.0}, {"acc": 0.0}])) is True
    assert check_reward_nonzero_std(ARGS, group([1.0, math.inf])) is False, "a non-finite reward drops the group"


def test_fallback_variant_names_the_reason():
    out = check_reward_nonzero_std_with_fallback(ARGS, group([1.0, 1.0]))
    assert out == DynamicFilterOutput(keep=False, reason="zero_std_1", keep_when_insufficient=True)
    assert check_reward_nonzero_std_with_fallback(ARGS, group([0, 1])).keep
