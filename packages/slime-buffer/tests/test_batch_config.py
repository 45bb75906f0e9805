"""Batch arithmetic: rbs * n == gbs * steps, derivation by an explicit resolve step, DP divisibility."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import BatchConfig, check_batch_arithmetic
from slime.types import ConfigError


def test_global_batch_size_is_derived_from_steps_without_mutation():
    config = BatchConfig(rollout_batch_size=32, n_samples_per_prompt=8, num_steps_per_rollout=4)
    resolved = config.resolve()
    assert config.global_batch_size is None, "resolve returns a new config"
    assert (resolved.global_batch_size, resolved.num_steps_per_rollout) == (64, 4)
    assert resolved.over_sampling_batch_size == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.global_batch_size = 1  # type: ignore[misc]


def test_defaults_one_step_per_rollout_and_steps_from_gbs():
    assert check_batch_arithmetic(rollout_batch_size=4, n_samples_per_prompt=2).global_batch_size == 8
    resolved = check_batch_arithmetic(rollout_batch_size=4, n_samples_per_prompt=4, global_batch_size=8)
    assert resolved.num_steps_per_rollout == 2 and resolved.samples_per_dp_rank == 8


@given(
    rbs=st.integers(1, 64), n=st.integers(1, 16), steps=st.integers(1, 8), dp=st.integers(1, 8), explicit=st.booleans()
)
def test_resolved_configs_always_satisfy_the_invariants(rbs, n, steps, dp, explicit):
    gbs = rbs * n // steps if explicit else None
    try:
        r = check_batch_arithmetic(
            rollout_batch_size=rbs, n_samples_per_prompt=n, num_steps_per_rollout=steps, global_batch_size=gbs,
            data_parallel_size=dp,
        )  # fmt: skip
    except ConfigError as exc:
        assert (rbs * n) % steps or (rbs * n // steps) % dp, str(exc)
        return
    assert r.rollout_batch_size * r.n_samples_per_prompt == r.global_batch_size * r.num_steps_per_rollout
    assert r.global_batch_size % dp == 0


def test_mismatch_names_flags_and_fix():
    with pytest.raises(ConfigError) as info:
        BatchConfig(rollout_batch_size=32, n_samples_per_prompt=8, global_batch_size=100, num_steps_per_rollout=2)
    message = str(info.value)
    for text in ("--rollout-batch-size 32", "--n-samples-per-prompt 8", "--global-batch-size 100",
                 "--num-steps-per-rollout 2", "Fix: set --global-batch-size 128"):  # fmt: skip
        assert text in message


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"global_batch_size": 48}, r"not a multiple of --global-batch-size 48.*e\.g\. 32"),
        ({"num_steps_per_rollout": 3}, "cannot be split into --num-steps-per-rollout 3.*e.g. 2"),
        ({"data_parallel_size": 3}, "not divisible by the data-parallel size 3"),
        ({"data_parallel_size": 2, "micro_batch_size": 3}, "not a multiple of --micro-batch-size 3"),
        ({"over_sampling_batch_size": 2}, "--over-sampling-batch-size \\(2\\) is smaller"),
        ({"rollout_batch_size": 0}, "--rollout-batch-size to an int >= 1"),
        ({"n_samples_per_prompt": True}, "--n-samples-per-prompt"),
    ],
)
def test_each_violation_names_its_flag(kwargs, pattern):
    base = {"rollout_batch_size": 8, "n_samples_per_prompt": 8}
    with pytest.raises(ConfigError, match=pattern):
        check_batch_arithmetic(**{**base, **kwargs})
