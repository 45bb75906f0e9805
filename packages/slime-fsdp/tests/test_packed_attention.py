"""Packed attention equals per-sample attention: the function against a float64 naive reference, and whole
tiny models (Qwen3, Llama) packed vs one sample at a time through stock transformers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from slime.fsdp import pack, register_packed_attention
from slime.fsdp.packed_attention import packed_attention_forward


def naive(q, k, v, lengths, scale, window=None):
    """float64 causal (optionally sliding-window) softmax attention, one segment at a time, GQA by repeat."""
    q, k, v = q.double(), k.double(), v.double()
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    outs, start = [], 0
    for n in lengths:
        s = slice(start, start + n)
        scores = q[0, :, s] @ k[0, :, s].transpose(-1, -2) * scale
        i = torch.arange(n)
        allowed = i[None, :] <= i[:, None]
        if window is not None:
            allowed &= i[None, :] > i[:, None] - window
        scores = scores.masked_fill(~allowed, -math.inf)
        outs.append(torch.softmax(scores, -1) @ v[0, :, s])
        start += n
    return torch.cat(outs, dim=1).transpose(0, 1).unsqueeze(0)


@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5), window=st.sampled_from([None, 1, 3]))
def test_function_matches_naive(lengths, window):
    torch.manual_seed(len(lengths))
    total, heads, kv_heads, dim = sum(lengths), 4, 2, 8
    q, k, v = (torch.randn(1, h, total, dim) for h in (heads, kv_heads, kv_heads))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    out, _ = packed_attention_forward(None, q, k, v, None, scaling=0.3, sliding_window=window, cu_seq_lens_q=cu)
    torch.testing.assert_close(out.double(), naive(q, k, v, lengths, 0.3, window), atol=1e-5, rtol=1e-5)


def test_rejects_padding_and_batches():
    q = torch.zeros(2, 2, 3, 4)
    with pytest.raises(ValueError, match="one packed row"):
        packed_attention_forward(None, q, q, q, None)
    with pytest.raises(ValueError, match="attention_mask"):
        packed_attention_forward(None, q[:1], q[:1], q[:1], torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_packed_model_equals_unpacked(family, request, make_batch):
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    packed_model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=register_packed_attention())
    stock = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    batch = make_batch(5, seed=40, prompt_len=(1, 7), response_len=(1, 12))
    mb = pack(batch.samples, [0, 1, 2, 3, 4], torch.device("cpu"))
    kwargs = {**mb.model_kwargs(), "logits_to_keep": 0}  # every position, to compare whole sequences
    with torch.no_grad():
        packed = packed_model.eval()(**kwargs).logits[0]
        for i, s in enumerate(batch.samples):
            start, end = int(mb.cu_seqlens[i]), int(mb.cu_seqlens[i + 1])
            alone = stock.eval()(input_ids=torch.tensor([s.tokens])).logits[0]
            torch.testing.assert_close(packed[start:end], alone, atol=1e-5, rtol=1e-5)
