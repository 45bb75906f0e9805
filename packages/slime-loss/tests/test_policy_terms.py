"""Per-token building blocks of the actor loss, one reference test per registry entry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from slime_loss_reference import naive
from slime_loss_reference.batches import batches

from slime.loss import clipped_value_loss, opsm_mask, sft_token_losses
from slime.loss.registry import POLICY_LOSSES, TIS_FUNCTIONS

CLIPS = st.sampled_from([(0.2, 0.2, None), (0.2, 0.28, 3.0), (1.0, 4.0, None)])


def _masked(batch, values: torch.Tensor) -> list[float]:
    mask = [m for row in batch.masks for m in row]
    return [v for v, m in zip(values.tolist(), mask, strict=True) if m]


@pytest.mark.parametrize("estimator", ["grpo", "gspo", "cispo"])
@given(batch=batches(), clips=CLIPS)
def test_policy_losses_match_reference_on_masked_tokens(estimator, batch, clips):
    eps, eps_high, c = clips
    losses, clipfrac = POLICY_LOSSES[estimator](
        batch.packed("log_probs"), batch.packed("old_log_probs"), batch.packed("advantages"),
        batch.packed("masks", torch.long), batch.cu_seqlens(), eps_clip=eps, eps_clip_high=eps_high, eps_clip_c=c,
    )  # fmt: skip
    want_loss, want_clip = [], []
    for i, mask in enumerate(batch.masks):
        lps, olds, advs = batch.log_probs[i], batch.old_log_probs[i], batch.advantages[i]
        seq = sum(m * (a - b) for m, a, b in zip(mask, lps, olds, strict=True)) / max(1, sum(mask))
        for t, m in enumerate(mask):
            if not m:
                continue
            if estimator == "cispo":
                loss, clip = naive.cispo_token(lps[t], olds[t], advs[t], eps, eps_high)
            else:
                log_ratio = seq if estimator == "gspo" else lps[t] - olds[t]
                loss, clip = naive.ppo_token(log_ratio, advs[t], eps, eps_high, c)
            want_loss.append(loss), want_clip.append(clip)
    torch.testing.assert_close(torch.tensor(_masked(batch, losses)), torch.tensor(want_loss), rtol=1e-9, atol=1e-9)
    assert _masked(batch, clipfrac) == want_clip


@pytest.mark.parametrize("kind", sorted(TIS_FUNCTIONS))
@given(batch=batches(), bounds=st.sampled_from([(0.0, 2.0), (0.5, 2.0), (0.8, 1.2)]))
def test_tis_functions_match_reference(kind, batch, bounds):
    low, high = bounds
    mask = batch.packed("masks", torch.long)
    old, rollout = batch.packed("old_log_probs"), batch.packed("rollout_log_probs")
    result = TIS_FUNCTIONS[kind](old, rollout, mask, low=low, high=high)
    olds = [x for row in batch.old_log_probs for x in row]
    rollouts = [x for row in batch.rollout_log_probs for x in row]
    for t, m in enumerate(mask.tolist()):
        if not m:
            assert int(result.loss_mask[t]) == 0
            continue
        weight, keep, clipped = naive.tis_token(olds[t], rollouts[t], kind, low, high)
        assert float(result.weights[t]) == pytest.approx(weight, rel=1e-12)
        assert int(result.loss_mask[t]) == keep and float(result.is_clipped[t]) == clipped
        assert float(result.ratio[t]) == pytest.approx(math.exp(olds[t] - rollouts[t]), rel=1e-12)


@given(batch=batches(), delta=st.sampled_from([1e-4, 0.5, 5.0]))
def test_opsm_mask_matches_reference(batch, delta):
    keep = opsm_mask(
        batch.packed("log_probs"), batch.packed("old_log_probs"), batch.packed("advantages"),
        batch.packed("masks", torch.long), batch.cu_seqlens(), delta=delta,
    )  # fmt: skip
    want = []
    for i, mask in enumerate(batch.masks):
        drift = sum(m * (o - lp) for m, o, lp in zip(mask, batch.old_log_probs[i], batch.log_probs[i], strict=True))
        drift /= max(1, sum(mask))
        want += [0.0 if (a < 0 and drift > delta) else 1.0 for a in batch.advantages[i]]
    assert keep.tolist() == want


@given(batch=batches(), clip=st.sampled_from([0.2, 1.0]))
def test_value_and_sft_token_losses_match_reference(batch, clip):
    values, old, returns = batch.packed("values"), batch.packed("advantages") / 3, batch.packed("log_probs") / 4
    losses, clipfrac = clipped_value_loss(values, old, returns, clip)
    triples = zip(values.tolist(), old.tolist(), returns.tolist(), strict=True)
    want = [naive.value_token(v, o, r, clip) for v, o, r in triples]
    torch.testing.assert_close(losses, torch.tensor([w[0] for w in want], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert clipfrac.tolist() == [w[1] for w in want]
    mask = batch.packed("masks", torch.long)
    nll = sft_token_losses(batch.packed("log_probs"), mask)
    pairs = zip(batch.packed("log_probs").tolist(), mask.tolist(), strict=True)
    assert nll.tolist() == [-lp if m else 0.0 for lp, m in pairs]
