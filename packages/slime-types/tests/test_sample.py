"""Sample invariants, multi-turn append semantics, status mapping and dict round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.types import ContractError, Sample, Status


def test_user_code_from_the_docs_works_as_written():
    sample = Sample(prompt="q", tokens=[1, 2], metadata={"session_id": "abc"})
    assert sample.metadata["session_id"] == "abc"
    sample.tokens = [1, 2, 3, 4]
    sample.response_length = 2
    sample.loss_mask = [1, 0]
    sample.status = Sample.Status.COMPLETED
    sample.validate()
    assert sample.effective_response_length == 1


@given(turns=st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=8))
def test_multi_turn_masks_and_logprobs_stay_aligned(turns):
    sample = Sample(index=0, group_index=0, tokens=[7, 7, 7])
    expected_mask: list[int] = []
    for turn, (num_tokens, is_model) in enumerate(turns):
        ids = [turn] * num_tokens
        log_probs = [-0.5] * num_tokens if is_model else None
        sample.append_response(ids, log_probs if is_model else None, is_trainable=is_model)
        expected_mask += [1 if is_model else 0] * num_tokens
    sample.validate()
    assert sample.loss_mask == expected_mask
    assert sample.response_length == len(expected_mask) == len(sample.tokens) - 3
    if sample.rollout_log_probs is not None:
        assert [lp != 0.0 for lp in sample.rollout_log_probs] == [bool(m) for m in expected_mask]


def test_trainable_tokens_need_logprobs_once_recording():
    sample = Sample(tokens=[1])
    sample.append_response([2], [-1.0])
    with pytest.raises(ContractError, match="log-probs"):
        sample.append_response([3])


@pytest.mark.parametrize("field", ["loss_mask", "rollout_log_probs"])
def test_validate_names_the_misaligned_field(field):
    sample = Sample(index=3, tokens=[1, 2, 3], response_length=2)
    setattr(sample, field, [1])
    with pytest.raises(ContractError, match=rf"len\({field}\)=1 but response_length=2"):
        sample.validate()


def test_status_from_finish_reason():
    assert Status.from_finish_reason("stop") is Status.COMPLETED
    assert Status.from_finish_reason("length") is Status.TRUNCATED
    assert Status.from_finish_reason("abort") is Status.ABORTED
    assert Status.TRUNCATED.is_finished and not Status.ABORTED.is_finished
    with pytest.raises(ContractError, match="'eos'"):
        Status.from_finish_reason("eos")


def test_dict_round_trip_keeps_unknown_keys():
    sample = Sample(
        index=1,
        group_index=0,
        prompt=[{"role": "user", "content": "hi"}],
        tokens=[1, 2],
        response_length=1,
        reward={"acc": 1.0},
        status=Status.TRUNCATED,
    )
    data = sample.to_dict() | {"future_field": 5}
    back = Sample.from_dict(data)
    assert back.status is Status.TRUNCATED and back.prompt == sample.prompt
    assert back.metadata["extra_fields"] == {"future_field": 5}


def test_dict_reward_needs_reward_key():
    sample = Sample(index=0, reward={"acc": 1.0, "fmt": 0.5})
    assert sample.get_reward_value("fmt") == 0.5
    with pytest.raises(ContractError, match="--reward-key"):
        sample.get_reward_value(None)


def test_reset_for_retry_restores_the_prompt():
    sample = Sample(tokens=[1, 2])
    sample.append_response([3, 4], [-1.0, -2.0])
    sample.reset_for_retry()
    assert sample.tokens == [1, 2] and sample.response_length == 0 and sample.status is Status.PENDING
