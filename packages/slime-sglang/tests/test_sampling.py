"""The local server's sampling math against naive float64 references (SGLang's rules)."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from slime.sglang.client import EngineClient
from slime.sglang.local_server.sampling import RowSampling, filter_top_k_top_p, sample
from slime.types import GenerationEngine

logits_rows = st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=2, max_size=12)


def naive_keep(probs: list[float], top_k: int, top_p: float) -> set[int]:
    """SGLang's torch rule: rank < k, and the mass strictly before a token (sorted, stable) <= top_p."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    keep, before = set(), 0.0
    for rank, index in enumerate(order):
        if (top_k <= 0 or rank < top_k) and before <= top_p + 1e-12:
            keep.add(index)
        before += probs[index]
    return keep


@given(row=logits_rows, top_k=st.integers(-1, 14), top_p=st.floats(0.05, 1.0), temperature=st.floats(0.1, 3.0))
def test_filter_matches_naive_rule(row, top_k, top_p, temperature) -> None:
    top_k = -1 if top_k == 0 else top_k
    scaled = [x / temperature for x in row]
    peak = max(scaled)
    total = sum(math.exp(x - peak) for x in scaled)
    probs64 = [math.exp(x - peak) / total for x in scaled]
    probs = torch.tensor(probs64, dtype=torch.float64)[None]
    kept = filter_top_k_top_p(probs, top_k=torch.tensor([top_k]), top_p=torch.tensor([top_p], dtype=torch.float64))
    got = {i for i, p in enumerate(kept[0].tolist()) if p > 0}
    if len(set(probs64)) == len(probs64):  # ties make the sorted order (and so the cut) ambiguous
        assert got == naive_keep(probs64, top_k, top_p)
    assert got and all(kept[0, i] == probs[0, i] for i in got)


@given(row=logits_rows, temperature=st.one_of(st.just(0.0), st.floats(0.1, 3.0)), seed=st.integers(0, 2**31 - 1))
def test_sample_returns_the_temperature_scaled_logprob_of_its_token(row, temperature, seed) -> None:
    logits = torch.tensor([row])
    generator = torch.Generator().manual_seed(seed)
    tokens, logprobs = sample(logits, [RowSampling(temperature=temperature, generator=generator)])
    token = int(tokens[0])
    scale = temperature if temperature >= 1e-6 else 1.0
    values = [x / scale for x in torch.tensor(row).tolist()]
    peak = max(values)
    reference = values[token] - peak - math.log(sum(math.exp(v - peak) for v in values))
    assert abs(float(logprobs[0]) - reference) < 1e-5
    if temperature < 1e-6:
        assert row[token] == max(row)


def test_engine_client_is_a_generation_engine() -> None:
    assert isinstance(EngineClient("http://127.0.0.1:1"), GenerationEngine)
