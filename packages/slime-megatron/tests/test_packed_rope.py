"""slime.megatron.packed_rope: one-pass RoPE over a packed row equals Megatron's per-sequence THD rotation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb

from slime.megatron.packed_rope import PackedRopeSelfAttention, PackedSeqParamsWithPositions, rotate_packed

CONFIG = SimpleNamespace(apply_rope_fusion=False, rotary_interleaved=False, multi_latent_attention=False)
ONE_RANK = SimpleNamespace(size=lambda: 1, rank=lambda: 0)  # Megatron's THD path asks the CP group its size


def packed(lengths: list[int], dtype: torch.dtype, heads: int = 4, kv_heads: int = 2, dim: int = 16):
    bounds = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
    positions = torch.cat([torch.arange(n) for n in lengths])
    g = torch.Generator().manual_seed(len(lengths))
    query = torch.randn(int(bounds[-1]), heads, dim, generator=g).to(dtype)
    key = torch.randn(int(bounds[-1]), kv_heads, dim, generator=g).to(dtype)
    # Megatron's RotaryEmbedding layout, [max_seqlen, 1, 1, dim] (its module asks CUDA for the device)
    inv_freq = 1.0 / (1_000_000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = torch.outer(torch.arange(max(lengths), dtype=torch.float32), inv_freq)
    freqs = torch.cat((angles, angles), dim=-1)[:, None, None, :]
    params = PackedSeqParamsWithPositions(
        qkv_format="thd", cu_seqlens_q=bounds, cu_seqlens_kv=bounds, max_seqlen_q=max(lengths),
        max_seqlen_kv=max(lengths), positions=positions, rotary_pos_emb=(freqs, freqs),
    )  # fmt: skip
    return query, key, freqs, params


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lengths", [[7], [5, 9, 3], [1, 12, 4, 4]])  # the last sequence stands for padding
def test_one_pass_equals_megatron_per_sequence_rotation(lengths: list[int], dtype: torch.dtype) -> None:
    query, key, freqs, params = packed(lengths, dtype)
    got_q, got_k = rotate_packed(query, key, params, CONFIG)
    for got, tensor in ((got_q, query), (got_k, key)):
        want = apply_rotary_pos_emb(tensor, freqs, config=CONFIG, cu_seqlens=params.cu_seqlens_q, cp_group=ONE_RANK)
        assert got.dtype == tensor.dtype and torch.equal(got, want)  # the same arithmetic, bit for bit


def test_every_layer_after_the_first_reuses_the_rows_cos_and_sin() -> None:
    from dataclasses import replace

    query, key, freqs, params = packed([5, 9, 3], torch.bfloat16)
    first = rotate_packed(query, key, replace(params), CONFIG)  # each layer gets its own copy of the parameters
    assert len(params.rope_cache) == 1  # query and key share one frequency table: one entry, seen by the original
    cos = next(iter(params.rope_cache.values()))[1]
    second = rotate_packed(query, key, replace(params), CONFIG)
    assert next(iter(params.rope_cache.values()))[1] is cos and all(map(torch.equal, first, second))
    other = freqs.clone()  # another table (a new forward's): computed afresh, not served from the old entry
    rotate_packed(query, key, replace(params, rotary_pos_emb=(other, other)), CONFIG)
    assert len(params.rope_cache) == 2


def test_rotation_has_megatrons_gradient() -> None:
    query, key, freqs, params = packed([6, 3, 5], torch.float64)
    query.requires_grad_(True)
    rotate_packed(query, key, params, CONFIG)[0].pow(2).sum().backward()
    ref = query.detach().clone().requires_grad_(True)
    want = apply_rotary_pos_emb(ref, freqs, config=CONFIG, cu_seqlens=params.cu_seqlens_q, cp_group=ONE_RANK)
    want.pow(2).sum().backward()
    torch.testing.assert_close(query.grad, ref.grad, rtol=0, atol=1e-12)


def test_the_attention_hands_rope_over_only_where_it_can() -> None:
    """Everything but a plain packed row keeps Megatron's own path (TE fusion, MLA, context parallelism, inference,
    and parameters without positions)."""
    _, _, _, params = packed([4, 4], torch.float32)

    def fake(cp: int = 1, **config: bool) -> SimpleNamespace:
        flags = {"apply_rope_fusion": False, "multi_latent_attention": False, **config}
        group = SimpleNamespace(cp=SimpleNamespace(size=lambda: cp))
        return SimpleNamespace(config=SimpleNamespace(**flags), pg_collection=group)

    rotates = PackedRopeSelfAttention._rotates_packed
    assert rotates(fake(), params, None)
    assert not rotates(fake(apply_rope_fusion=True), params, None)
    assert not rotates(fake(multi_latent_attention=True), params, None)
    assert not rotates(fake(cp=2), params, None)
    assert not rotates(fake(), params, inference_context=object())
    from dataclasses import replace

    assert not rotates(fake(), replace(params, positions=None), None)
    assert not rotates(fake(), replace(params, qkv_format="sbhd"), None)
