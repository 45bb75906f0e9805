"""Name maps and fused layouts, against naive per-head references (no Megatron, no files)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from slime.convert import ModelLayout
from slime.convert import megatron_names as names
from slime.types import ConfigError


def layout(**overrides) -> ModelLayout:
    fields = dict(
        family="qwen2", num_layers=2, hidden_size=8, num_heads=4, num_kv_heads=2, head_dim=3, ffn_hidden_size=5,
        vocab_size=11, tied_embeddings=False, qkv_bias=True, qk_norm=False,
    )  # fmt: skip
    return ModelLayout(**(fields | overrides))


def naive_fused_qkv(q, k, v, kv_heads: int, head_dim: int) -> torch.Tensor:
    """Megatron's linear_qkv rows built head by head: per KV group its query heads, then its key, then its value."""
    per_group = q.shape[0] // head_dim // kv_heads
    rows = []
    for g in range(kv_heads):
        for h in range(per_group):
            rows.append(q[(g * per_group + h) * head_dim : (g * per_group + h + 1) * head_dim])
        rows.append(k[g * head_dim : (g + 1) * head_dim])
        rows.append(v[g * head_dim : (g + 1) * head_dim])
    return torch.cat(rows)


@given(
    kv_heads=st.integers(1, 4),
    per_group=st.integers(1, 3),
    head_dim=st.integers(1, 4),
    hidden=st.integers(1, 5),
    bias=st.booleans(),
)
def test_qkv_split_inverts_the_grouped_fusion(kv_heads, per_group, head_dim, hidden, bias):
    lay = layout(num_heads=kv_heads * per_group, num_kv_heads=kv_heads, head_dim=head_dim, hidden_size=hidden)
    gen = torch.Generator().manual_seed(kv_heads * 100 + per_group * 10 + head_dim)
    tail = () if bias else (hidden,)
    q = torch.randn(lay.q_size, *tail, generator=gen, dtype=torch.float64)
    k = torch.randn(lay.kv_size, *tail, generator=gen, dtype=torch.float64)
    v = torch.randn(lay.kv_size, *tail, generator=gen, dtype=torch.float64)
    fused = naive_fused_qkv(q, k, v, kv_heads, head_dim)
    suffix = "self_attention.linear_qkv." + ("bias" if bias else "weight")
    assert fused.shape == names.megatron_layer_shapes(lay)[suffix]
    out = dict(names.layer_to_hf(suffix, 1, fused, lay))
    kind = "bias" if bias else "weight"
    for part, expected in (("q", q), ("k", k), ("v", v)):
        assert torch.equal(out[f"model.layers.1.self_attn.{part}_proj.{kind}"], expected)


def test_fc1_is_gate_then_up_and_vocab_rows_are_cut():
    lay = layout()
    gate, up = torch.randn(5, 8), torch.randn(5, 8)
    out = dict(names.layer_to_hf("mlp.linear_fc1.weight", 0, torch.cat([gate, up]), lay))
    assert torch.equal(out["model.layers.0.mlp.gate_proj.weight"], gate)
    assert torch.equal(out["model.layers.0.mlp.up_proj.weight"], up)
    name, rows = names.global_to_hf("output_layer.weight", torch.randn(16, 8), vocab_size=11)
    assert name == "lm_head.weight" and rows.shape == (11, 8)


def test_every_hf_tensor_has_exactly_one_megatron_source():
    for lay in (layout(), layout(family="qwen3", qkv_bias=False, qk_norm=True, tied_embeddings=True)):
        produced = []
        for suffix in names.megatron_layer_shapes(lay):
            produced += [f"model.layers.0.{p}" for p in names.LAYER_TO_HF[suffix]]
        produced += [names.GLOBAL_TO_HF[k] for k in names.megatron_global_shapes(lay, 16)]
        layer0 = {n: s for n, s in lay.hf_shapes().items() if ".layers." not in n or ".layers.0." in n}
        assert sorted(produced) == sorted(layer0)


def test_parse_key_stacked_per_layer_and_local_names():
    assert names.parse_key("decoder.layers.mlp.linear_fc1.weight") == (True, None, "mlp.linear_fc1.weight")
    assert names.parse_key("decoder.layers.3.input_layernorm.weight") == (
        True,
        3,
        "self_attention.linear_qkv.layer_norm_weight",
    )
    assert names.parse_key("output_layer.weight") == (False, None, "output_layer.weight")


def test_layout_refuses_what_it_cannot_convert(models):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(models["llama"])
    assert ModelLayout.from_hf_config(config).tied_embeddings
    config.attention_bias = True
    with pytest.raises(ConfigError, match="attention_bias"):
        ModelLayout.from_hf_config(config)
    config.attention_bias, config.model_type = False, "qwen3_moe"
    with pytest.raises(ConfigError, match="megatron-to-hf"):
        ModelLayout.from_hf_config(config)
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        layout(num_heads=4, num_kv_heads=3)
