"""Discounted returns and GAE: serial and chunked scans against the naive reference and each other."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from slime_loss_reference import naive

from slime.loss import discounted_cumsum_chunked, discounted_cumsum_serial, gae_chunked, gae_serial
from slime.loss.packing import packed_to_padded, padded_to_packed


def _ragged(seed: int, lengths: list[int]) -> tuple[list[list[float]], list[list[float]], torch.Tensor]:
    rng = random.Random(seed)
    rewards = [[rng.uniform(-1, 1) for _ in range(n)] for n in lengths]
    values = [[rng.uniform(-2, 2) for _ in range(n)] for n in lengths]
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return rewards, values, torch.tensor(cu)


def _flat(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor([x for r in rows for x in r], dtype=torch.float64)


DISCOUNTS = st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0])


@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    gamma=DISCOUNTS,
    lambd=DISCOUNTS,
    chunk=st.integers(1, 17),
)
def test_chunked_gae_equals_serial_gae_and_the_reference(lengths, seed, gamma, lambd, chunk):
    rewards, values, cu = _ragged(seed, lengths)
    serial = gae_serial(_flat(rewards), _flat(values), cu, gamma, lambd)
    chunked = gae_chunked(_flat(rewards), _flat(values), cu, gamma, lambd, chunk_size=chunk)
    want = [naive.gae(r, v, gamma, lambd) for r, v in zip(rewards, values, strict=True)]
    for got in (serial, chunked):
        torch.testing.assert_close(got[0], _flat([w[0] for w in want]), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got[1], _flat([w[1] for w in want]), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(chunked[0], serial[0], rtol=1e-10, atol=1e-10)


@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    gamma=DISCOUNTS,
    chunk=st.integers(1, 17),
)
def test_discounted_returns_chunked_equal_serial_and_reference(lengths, seed, gamma, chunk):
    rewards, _, cu = _ragged(seed, lengths)
    want = _flat([naive.discounted_returns(r, gamma) for r in rewards])
    torch.testing.assert_close(discounted_cumsum_serial(_flat(rewards), cu, gamma), want, rtol=1e-9, atol=1e-9)
    got = discounted_cumsum_chunked(_flat(rewards), cu, gamma, chunk_size=chunk)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_long_float32_responses_stay_close(gamma):
    # Long responses across many chunks, in float32: the chunked scan must not drift from the serial one.
    lengths = [1000, 517, 3]
    rewards, values, cu = _ragged(3, lengths)
    r32, v32 = _flat(rewards).float(), _flat(values).float()
    serial = gae_serial(r32, v32, cu, gamma, 0.95)[0]
    chunked = gae_chunked(r32, v32, cu, gamma, 0.95, chunk_size=128)[0]
    torch.testing.assert_close(chunked, serial, rtol=1e-4, atol=1e-4)


def test_padding_round_trip_and_explicit_max_seqlen():
    values = torch.arange(6.0)
    cu = torch.tensor([0, 2, 2, 6])
    padded = packed_to_padded(values, cu, max_seqlen=5)
    assert padded.tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [2, 3, 4, 5, 0]]
    assert torch.equal(padded_to_packed(padded, cu, 6), values)


def test_rejects_bad_chunk():
    with pytest.raises(ValueError, match="chunk_size"):
        discounted_cumsum_chunked(torch.zeros(3), torch.tensor([0, 3]), 1.0, chunk_size=0)
