"""log_probs_from_logits / entropy_from_logits against the naive reference, torch, and gradcheck."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from slime_loss_reference import naive

from slime.loss import entropy_from_logits, log_probs_and_entropy_from_logits, log_probs_from_logits


@given(
    num_tokens=st.integers(0, 9),
    vocab=st.integers(1, 13),
    temperature=st.sampled_from([0.3, 0.7, 1.0, 1.6]),
    chunk=st.one_of(st.none(), st.integers(1, 5)),
    scale=st.sampled_from([1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_matches_naive_reference(num_tokens, vocab, temperature, chunk, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_tokens, vocab, generator=gen, dtype=torch.float64) * scale
    targets = torch.randint(0, vocab, (num_tokens,), generator=gen)
    lp, ent = log_probs_and_entropy_from_logits(logits, targets, temperature, chunk_size=chunk)
    rows = logits.tolist()
    want_lp = [naive.log_prob(r, t, temperature) for r, t in zip(rows, targets.tolist(), strict=True)]
    want_ent = [naive.entropy(r, temperature) for r in rows]
    torch.testing.assert_close(lp, torch.tensor(want_lp, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ent, torch.tensor(want_ent, dtype=torch.float64), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(log_probs_from_logits(logits, targets, temperature, chunk), lp)
    torch.testing.assert_close(entropy_from_logits(logits, temperature, chunk), ent)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_equals_log_softmax_gather_with_temperature(dtype, temperature):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(37, 50, generator=gen) * 4).to(dtype).requires_grad_()
    targets = torch.randint(0, 50, (37,), generator=gen)
    got = log_probs_from_logits(logits, targets, temperature, chunk_size=8)
    want = torch.log_softmax(logits.float() / temperature, -1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == torch.float32
    (grad_got,) = torch.autograd.grad(got.sum(), logits)
    (grad_want,) = torch.autograd.grad(want.sum(), logits)
    atol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(grad_got.float(), grad_want.float(), rtol=1e-2, atol=atol)
    assert grad_got.dtype == dtype


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_fused_backward_equals_autograd_of_plain_torch(chunk):
    # Hand-written backward vs autograd through log_softmax, in float64 (a cheap stand-in for gradcheck).
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (7,), generator=gen)
    w_lp, w_ent = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    for use_lp, use_ent in [(True, True), (True, False), (False, True)]:
        lp, ent = log_probs_and_entropy_from_logits(logits, targets, 0.8, chunk_size=chunk)
        log_p = torch.log_softmax(logits / 0.8, -1)
        want_lp = log_p.gather(-1, targets[:, None]).squeeze(-1)
        want_ent = -(log_p.exp() * log_p).sum(-1)
        # Leaving an output out of the graph exercises the backward's `grad is None` branches.
        got = sum(((w_lp * lp).sum(),) * use_lp + ((w_ent * ent).sum(),) * use_ent)
        want = sum(((w_lp * want_lp).sum(),) * use_lp + ((w_ent * want_ent).sum(),) * use_ent)
        (grad_got,) = torch.autograd.grad(got, logits)
        (grad_want,) = torch.autograd.grad(want, logits)
        torch.testing.assert_close(grad_got, grad_want, rtol=1e-10, atol=1e-12)


def test_entropy_matches_torch_distribution():
    logits = torch.randn(11, 17, dtype=torch.float64)
    want = torch.distributions.Categorical(logits=logits / 0.9).entropy()
    torch.testing.assert_close(entropy_from_logits(logits, 0.9), want)


@pytest.mark.parametrize(
    ("logits", "targets", "temperature", "match"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), 1.0, "must be \\[T, V\\]"),
        (torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), 1.0, "target_ids"),
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), 0.0, "temperature"),
    ],
)
def test_rejects_bad_inputs(logits, targets, temperature, match):
    with pytest.raises(ValueError, match=match):
        log_probs_from_logits(logits, targets, temperature)
