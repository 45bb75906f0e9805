"""Reducers and whitening against the reference; global denominators make micro-batch sums exact."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from slime_loss_reference import naive
from slime_loss_reference.batches import batches

from slime.loss import make_reducer, masked_mean_var, masked_whiten, sum_of_sample_mean, sum_of_tokens


@given(batch=batches())
def test_reducers_match_reference(batch):
    values, mask, cu = batch.packed("advantages"), batch.packed("masks", torch.long), batch.cu_seqlens()
    dens = torch.tensor(batch.denominators(), dtype=torch.float64)
    want_mean = naive.sum_of_sample_mean(batch.advantages, batch.masks, batch.denominators())
    torch.testing.assert_close(sum_of_sample_mean(values, mask, cu, dens), torch.tensor(want_mean, dtype=torch.float64))
    want_sum = naive.sum_of_tokens(batch.advantages, batch.masks)
    torch.testing.assert_close(sum_of_tokens(values, mask), torch.tensor(want_sum, dtype=torch.float64))


@given(batch=batches(), per_token=st.booleans(), data=st.data())
def test_make_reducer_over_micro_batches_equals_full_batch(batch, per_token, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(batch.masks)), max_size=3)))
    bounds = [0, *cuts, len(batch.masks)]
    dens = batch.denominators()
    num_tokens = float(sum(sum(m) for m in batch.masks))
    num_samples = float(len(batch.masks))
    total = torch.zeros((), dtype=torch.float64)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        rows = batch.advantages[lo:hi]
        cu = torch.tensor([0, *torch.tensor([len(r) for r in rows], dtype=torch.long).cumsum(0).tolist()])
        reducer = make_reducer(
            loss_mask=torch.tensor([x for m in batch.masks[lo:hi] for x in m]), cu_seqlens=cu,
            sample_denominators=torch.tensor(dens[lo:hi]), num_global_tokens=num_tokens,
            num_global_samples=torch.tensor(num_samples), calculate_per_token_loss=per_token,
        )  # fmt: skip
        total = total + reducer(torch.tensor([x for r in rows for x in r], dtype=torch.float64))
    if per_token:
        want = naive.sum_of_tokens(batch.advantages, batch.masks) / max(1.0, num_tokens)
    else:
        want = naive.sum_of_sample_mean(batch.advantages, batch.masks, dens) / num_samples
    torch.testing.assert_close(total, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)


@given(batch=batches(), shift=st.floats(-1e3, 1e3), scale=st.floats(0.1, 10))
def test_whitening_matches_reference_and_is_affine_invariant(batch, shift, scale):
    values, mask = batch.packed("advantages"), batch.packed("masks", torch.long)
    flat_mask = [m for row in batch.masks for m in row]
    want = torch.tensor(naive.whiten(values.tolist(), flat_mask), dtype=torch.float64)
    torch.testing.assert_close(masked_whiten(values, mask), want, rtol=1e-7, atol=1e-7)
    # The 1e-8 added to the variance breaks exact invariance only when the scaled variance is tiny.
    if sum(flat_mask) > 1 and float(masked_mean_var(values, mask)[1]) * scale**2 > 1e-3:
        scaled = masked_whiten(values * scale + shift, mask)
        torch.testing.assert_close(scaled, masked_whiten(values, mask), rtol=1e-5, atol=1e-5)


def test_whitened_tokens_have_zero_mean_and_unit_unbiased_variance():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0, 4.0], dtype=torch.float64)
    mask = torch.tensor([1, 1, 1, 0, 1])
    out = masked_whiten(values, mask)[mask.bool()]
    torch.testing.assert_close(out.mean(), torch.zeros((), dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.var(), torch.ones((), dtype=torch.float64), atol=1e-6, rtol=0)
