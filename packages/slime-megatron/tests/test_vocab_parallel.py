"""The vocab-parallel log-prob/entropy on one shard (eager and chunked on CPU, compiled on CUDA), against a float64
naive reference and slime.loss.

The TP=2 case (two real shards, gloo all-reduces) runs in the worlds of test_megatron_parity.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from slime.megatron.vocab_parallel import vocab_parallel_log_probs


def _naive(logits: torch.Tensor, targets: torch.Tensor, vocab: int, temperature: float):
    logp = torch.log_softmax(logits[:, :vocab] / temperature, dim=-1)
    return logp.gather(-1, targets[:, None])[:, 0], -(logp.exp() * logp).sum(-1)


@given(
    rows=st.integers(0, 13),
    vocab=st.integers(2, 40),
    pad=st.integers(0, 5),
    temperature=st.floats(0.3, 2.0),
    chunk=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_matches_naive_float64_with_padding_and_chunks(rows, vocab, pad, temperature, chunk, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, vocab + pad, generator=gen, dtype=torch.float64) * 4).requires_grad_(True)
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    w1, w2 = (
        torch.randn(rows, generator=gen, dtype=torch.float64),
        torch.randn(rows, generator=gen, dtype=torch.float64),
    )
    lp, ent = vocab_parallel_log_probs(
        logits, targets, vocab_size=vocab, temperature=temperature, chunk_size=chunk, with_entropy=True
    )
    ((lp * w1).sum() + (ent * w2).sum()).backward()
    ref_in = logits.detach().clone().requires_grad_(True)
    ref_lp, ref_ent = _naive(ref_in, targets, vocab, temperature)
    ((ref_lp * w1).sum() + (ref_ent * w2).sum()).backward()
    torch.testing.assert_close(lp, ref_lp, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(logits.grad, ref_in.grad, rtol=1e-9, atol=1e-10)
    assert rows == 0 or (logits.grad[:, vocab:] == 0).all()  # padding columns get no gradient


def test_bf16_logits_match_slime_loss() -> None:
    from slime.loss import log_probs_and_entropy_from_logits

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(50, 300, generator=gen) * 3).bfloat16()
    targets = torch.randint(0, 300, (50,), generator=gen)
    lp, ent = vocab_parallel_log_probs(logits, targets, temperature=0.8, chunk_size=7, with_entropy=True)
    ref_lp, ref_ent = log_probs_and_entropy_from_logits(logits, targets, temperature=0.8)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, ref_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-4, atol=1e-4)  # two fp32 formulas of H


def test_without_entropy_returns_none() -> None:
    lp, ent = vocab_parallel_log_probs(torch.zeros(3, 4), torch.tensor([0, 1, 3]))
    assert ent is None
    torch.testing.assert_close(lp, torch.full((3,), -torch.log(torch.tensor(4.0)).item()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (the compiled path)")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")  # dynamo's tracing reads it
@pytest.mark.parametrize("with_entropy", [False, True])
def test_compiled_cuda_path_matches_float64(with_entropy: bool) -> None:
    from slime.megatron import vocab_parallel

    gen = torch.Generator(device="cuda").manual_seed(0)
    rows, vocab, pad = 300, 4990, 10
    logits = (torch.randn(rows, vocab + pad, device="cuda", generator=gen) * 3).bfloat16().requires_grad_(True)
    targets = torch.randint(0, vocab, (rows,), device="cuda", generator=gen)
    w1, w2 = torch.randn(rows, device="cuda", generator=gen), torch.randn(rows, device="cuda", generator=gen)
    assert vocab_parallel._fused(logits[:, :vocab])
    reference = logits.detach().double().requires_grad_(True)  # float64: the eager path
    grads = []
    for x in (logits, reference):
        lp, ent = vocab_parallel_log_probs(x, targets, vocab_size=vocab, temperature=0.7, with_entropy=with_entropy)
        loss = (lp * w1.to(lp.dtype)).sum() + ((ent * w2.to(ent.dtype)).sum() if with_entropy else 0.0)
        loss.backward()
        grads.append((lp, ent, x.grad))
    (lp, ent, grad), (ref_lp, ref_ent, ref_grad) = grads
    assert lp.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(lp.double(), ref_lp, rtol=1e-5, atol=1e-5)
    if with_entropy:
        torch.testing.assert_close(ent.double(), ref_ent, rtol=1e-5, atol=1e-5)
    # the gradient is rounded to bf16 once, as the eager path's is
    torch.testing.assert_close(grad.double(), ref_grad.bfloat16().double(), rtol=1e-2, atol=1e-6)
    assert (grad[:, vocab:] == 0).all()
