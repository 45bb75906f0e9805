"""compute_advantages and the group baselines against the float64 reference, plus their properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from slime_loss_reference import naive
from slime_loss_reference.batches import batches

from slime.loss import LossConfig, compute_advantages, group_mean_baseline, grpo_scores, raw_rewards, rloo_scores
from slime.loss.group_advantage import dense_group_index

ESTIMATORS = ["grpo", "dr_grpo", "gspo", "cispo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "ppo"]
SCORE_FNS = {"grpo": grpo_scores, "mean": group_mean_baseline, "rloo": rloo_scores, "raw": raw_rewards}


def _flat(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor([x for row in rows for x in row], dtype=torch.float64)


def _run(config: LossConfig, batch) -> tuple[torch.Tensor, torch.Tensor]:
    return compute_advantages(
        config,
        rewards=torch.tensor(batch.rewards, dtype=torch.float64),
        group_ids=torch.tensor(batch.group_ids),
        cu_seqlens=batch.cu_seqlens(),
        loss_mask=batch.packed("masks", torch.long),
        old_log_probs=batch.packed("old_log_probs"),
        ref_log_probs=batch.packed("ref_log_probs"),
        values=batch.packed("values"),
    )


@given(batch=batches(), kind=st.sampled_from(sorted(SCORE_FNS)))
def test_group_scores_match_reference(batch, kind):
    got = SCORE_FNS[kind](torch.tensor(batch.rewards, dtype=torch.float64), torch.tensor(batch.group_ids))
    want = naive.group_scores(batch.rewards, batch.group_ids, kind)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-9)


@given(batch=batches(), kind=st.sampled_from(["grpo", "mean", "rloo"]), shift=st.floats(-100, 100))
def test_group_scores_are_shift_invariant_and_sum_to_zero(batch, kind, shift):
    rewards = torch.tensor(batch.rewards, dtype=torch.float64)
    ids = torch.tensor(batch.group_ids)
    scores = SCORE_FNS[kind](rewards, ids)
    torch.testing.assert_close(SCORE_FNS[kind](rewards + shift, ids), scores, rtol=1e-6, atol=1e-6)
    for group in set(batch.group_ids):
        members = ids == group
        assert abs(float(scores[members].sum())) < 1e-6 * max(1.0, float(scores.abs().max()))


def test_zero_variance_and_singleton_groups_give_zero_grpo_advantage():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.3])
    scores = grpo_scores(rewards, torch.tensor([7, 7, 7, 9]))
    assert torch.equal(scores, torch.zeros(4))


def test_grpo_std_is_bessel_corrected_like_torch_std():
    rewards = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    want = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    torch.testing.assert_close(grpo_scores(rewards, torch.zeros(5, dtype=torch.long)), want)


def test_dense_group_index_keeps_first_seen_independent_labels():
    dense = dense_group_index(torch.tensor([50, -3, 50, 8, -3]))
    assert dense.tolist() == [2, 0, 2, 1, 0]


@given(
    batch=batches(extreme=False),
    estimator=st.sampled_from(ESTIMATORS),
    kl_coef=st.sampled_from([0.0, 0.1]),
    kl_type=st.sampled_from(["k1", "k2", "k3", "low_var_kl"]),
    gamma=st.sampled_from([1.0, 0.9, 0.0]),
    lambd=st.sampled_from([1.0, 0.95, 0.0]),
    flags=st.sampled_from([(False, False), (True, False), (False, True)]),
    whiten=st.booleans(),
)
def test_compute_advantages_matches_reference(batch, estimator, kl_coef, kl_type, gamma, lambd, flags, whiten):
    whiten = whiten or estimator.startswith("reinforce")
    config = LossConfig(
        advantage_estimator=estimator, kl_coef=kl_coef, kl_loss_type=kl_type, gamma=gamma, lambd=lambd,
        disable_grpo_std_normalization=flags[0], disable_rewards_normalization=flags[1], normalize_advantages=whiten,
    )  # fmt: skip
    advantages, returns = _run(config, batch)
    want_adv, want_ret = naive.advantages(config, batch)
    torch.testing.assert_close(advantages, _flat(want_adv), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(returns, _flat(want_ret), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("estimator", ["grpo", "gspo", "cispo", "dr_grpo", "rloo"])
def test_group_estimators_ignore_kl_coef(estimator):
    cu = torch.tensor([0, 2, 5])
    common = {
        "rewards": torch.tensor([1.0, 0.0]), "group_ids": torch.tensor([0, 0]), "cu_seqlens": cu,
        "loss_mask": torch.ones(5), "old_log_probs": torch.zeros(5), "ref_log_probs": torch.full((5,), -1.0),
    }  # fmt: skip
    with_kl = compute_advantages(LossConfig(advantage_estimator=estimator, kl_coef=0.5), **common)
    without = compute_advantages(LossConfig(advantage_estimator=estimator), **common)
    torch.testing.assert_close(with_kl, without)


def test_ppo_needs_values_and_kl_needs_ref():
    common = {"rewards": torch.ones(1), "group_ids": torch.zeros(1, dtype=torch.long),
              "cu_seqlens": torch.tensor([0, 3]), "loss_mask": torch.ones(3)}  # fmt: skip
    with pytest.raises(ValueError, match="values"):
        compute_advantages(LossConfig(advantage_estimator="ppo"), **common)
    with pytest.raises(ValueError, match="ref_log_probs"):
        compute_advantages(LossConfig(advantage_estimator="ppo", kl_coef=0.1), values=torch.zeros(3), **common)
    with pytest.raises(ValueError, match="\\[B\\]"):
        compute_advantages(LossConfig(), **{**common, "rewards": torch.ones(2)})


def test_advantages_have_no_autograd_history():
    old = torch.zeros(3, requires_grad=True)
    adv, _ = compute_advantages(
        LossConfig(advantage_estimator="reinforce_plus_plus", normalize_advantages=True, kl_coef=0.1),
        rewards=torch.ones(1), group_ids=torch.zeros(1, dtype=torch.long), cu_seqlens=torch.tensor([0, 3]),
        loss_mask=torch.ones(3), old_log_probs=old, ref_log_probs=torch.zeros(3) - 0.5,
    )  # fmt: skip
    assert not adv.requires_grad


def test_on_policy_distillation_subtracts_reverse_kl_before_whitening():
    common = {"rewards": torch.tensor([1.0, 0.0]), "group_ids": torch.tensor([0, 0]),
              "cu_seqlens": torch.tensor([0, 2, 3]), "loss_mask": torch.ones(3),
              "old_log_probs": torch.tensor([-1.0, -2.0, -0.5]),
              "teacher_log_probs": torch.tensor([-1.5, -1.0, -0.5])}  # fmt: skip
    base, _ = compute_advantages(LossConfig(), **common)
    opd, returns = compute_advantages(LossConfig(use_opd=True, opd_kl_coef=0.5), **common)
    torch.testing.assert_close(opd, base - 0.5 * torch.tensor([0.5, -1.0, 0.0]))
    torch.testing.assert_close(returns, base)  # returns are the estimator's, as in slime
    with pytest.raises(ValueError, match="teacher_log_probs"):
        compute_advantages(LossConfig(use_opd=True), **{k: v for k, v in common.items() if k != "teacher_log_probs"})


@given(batch=batches(), estimator=st.sampled_from(["grpo", "gspo", "cispo"]))
def test_given_scores_replace_the_group_baseline(batch, estimator):
    """slime's reward post-process: its per-sample rewards are the scores, taken as they are (float64)."""
    scores = torch.linspace(-1.0, 2.0, len(batch.rewards), dtype=torch.float64)
    loss_mask = batch.packed("masks", torch.long)
    advantages, _ = compute_advantages(
        LossConfig(advantage_estimator=estimator), rewards=torch.tensor(batch.rewards, dtype=torch.float64),
        group_ids=torch.tensor(batch.group_ids), cu_seqlens=batch.cu_seqlens(), loss_mask=loss_mask, scores=scores,
    )  # fmt: skip
    expected = torch.repeat_interleave(scores, torch.tensor(batch.lengths))
    trained = loss_mask.bool()  # positions outside the loss mask never reach the loss
    torch.testing.assert_close(advantages.to(torch.float64)[trained], expected[trained], rtol=0, atol=1e-12)


def test_scores_must_be_one_per_sample():
    common = {"rewards": torch.ones(2), "group_ids": torch.zeros(2, dtype=torch.long),
              "cu_seqlens": torch.tensor([0, 1, 3]), "loss_mask": torch.ones(3)}  # fmt: skip
    with pytest.raises(ValueError, match=r"`scores` \(3,\) must be \[B\]=2"):
        compute_advantages(LossConfig(), **common, scores=torch.ones(3))
