"""TrainSample / RolloutBatch conversion and invariants; SamplingParams validation."""

from __future__ import annotations

import pytest

from slime.types import ConfigError, ContractError, RolloutBatch, Sample, SamplingParams, Status, TrainSample


def _scored(index: int, group: int, reward: float) -> Sample:
    sample = Sample(index=index, group_index=group, tokens=[5, 6])
    sample.append_response([1, 2, 3], [-0.1, -0.2, -0.3], weight_version="4")
    sample.reward, sample.status = reward, Status.COMPLETED
    return sample


def test_rollout_batch_from_groups():
    batch = RolloutBatch.from_groups(
        7, [[_scored(0, 0, 1.0), _scored(1, 0, 0.0)], [_scored(2, 1, 1.0), _scored(3, 1, 1.0)]]
    )
    assert batch.n_samples_per_prompt == 2 and len(batch.samples) == 4
    first = batch.samples[0]
    assert first.prompt_length == 2 and first.loss_mask == (1, 1, 1) and first.weight_version == "4"
    assert batch.num_tokens == 20


def test_removed_sample_keeps_reward_but_not_gradient():
    sample = _scored(0, 0, 1.0)
    sample.remove_sample = True
    record = TrainSample.from_sample(sample)
    assert record.reward == 1.0 and record.loss_mask == (0, 0, 0)


def test_unscored_sample_is_refused():
    sample = _scored(0, 0, 1.0)
    sample.reward = None
    with pytest.raises(ContractError, match="no reward"):
        TrainSample.from_sample(sample)


def test_ragged_groups_are_refused():
    with pytest.raises(ContractError, match="different sizes"):
        RolloutBatch.from_groups(0, [[_scored(0, 0, 1.0)], [_scored(1, 1, 1.0), _scored(2, 1, 0.0)]])


def test_train_sample_checks_lengths():
    with pytest.raises(ContractError, match="loss_mask"):
        TrainSample(tokens=(1, 2, 3), response_length=2, loss_mask=(1,), reward=0.0, group_index=0, index=0)


def test_sampling_params_to_sglang_and_validation():
    params = SamplingParams(max_new_tokens=8, temperature=0.7, stop=("</s>",), stop_token_ids=(2,))
    out = params.to_sglang()
    assert out["max_new_tokens"] == 8 and out["stop"] == ["</s>"] and out["stop_token_ids"] == [2]
    assert params.with_max_new_tokens(-3).max_new_tokens == 0
    with pytest.raises(ConfigError, match="top_p"):
        SamplingParams(max_new_tokens=1, top_p=0.0)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingParams(max_new_tokens=1, temperature=-1.0)


def test_teacher_log_probs_travel_into_the_train_sample():
    sample = _scored(0, 0, 0.0)
    sample.teacher_log_probs = [-1.5, -0.25, -3.0]
    batch = RolloutBatch.from_groups(0, [[sample]])
    assert batch.samples[0].teacher_log_probs == (-1.5, -0.25, -3.0)
    assert TrainSample.from_sample(_scored(1, 0, 0.0)).teacher_log_probs is None
    sample.teacher_log_probs = [-1.5, -0.25]
    with pytest.raises(ContractError, match="teacher_log_probs"):
        TrainSample.from_sample(sample)
    with pytest.raises(ContractError, match="teacher_log_probs"):
        TrainSample(tokens=(1, 2, 3), response_length=2, loss_mask=(1, 1), reward=0.0, group_index=0, index=0,
                    teacher_log_probs=(-1.0,))  # fmt: skip


def test_post_processed_scores_ride_with_the_batch():
    groups = [[_scored(0, 0, 1.0), _scored(1, 0, 0.0)]]
    batch = RolloutBatch.from_groups(3, groups, scores=[0.5, -0.5])
    assert batch.scores == (0.5, -0.5) and RolloutBatch.from_groups(3, groups).scores is None
    with pytest.raises(ContractError, match="1 scores for 2 samples"):
        RolloutBatch.from_groups(3, groups, scores=[0.5])
