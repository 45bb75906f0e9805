"""Megatron-core GPTModel weights <-> HF weights for the dense families: names, fused layouts, vocab padding.

A torch_dist checkpoint stores each weight as one global tensor, independent of TP/PP: per-layer weights either
stacked over layers (`decoder.layers.<suffix>`, leading axis = layer, Megatron's default) or one key per layer
(`decoder.layers.<i>.<suffix>`). Names are TransformerEngine's (`linear_qkv.layer_norm_weight`); the local spec's
`input_layernorm` / `pre_mlp_layernorm` are accepted as aliases. Two tensors are fused:

- `linear_qkv` rows are grouped by KV head: for each of the `num_kv_heads` groups, its `num_heads/num_kv_heads`
  query heads, then its key head, then its value head (`head_dim` rows each); the bias likewise;
- `linear_fc1` is `[gate_proj; up_proj]`.

The embedding and output layer carry Megatron's padded vocabulary; conversion to HF keeps the first `vocab_size`
rows. This module maps and splits tensors; it reads and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch

from slime.convert.model_layout import ModelLayout, Shape

LAYER_TO_HF: dict[str, tuple[str, ...]] = {
    "self_attention.linear_qkv.layer_norm_weight": ("input_layernorm.weight",),
    "self_attention.linear_qkv.weight": (
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
    ),
    "self_attention.linear_qkv.bias": ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
    "self_attention.q_layernorm.weight": ("self_attn.q_norm.weight",),
    "self_attention.k_layernorm.weight": ("self_attn.k_norm.weight",),
    "self_attention.linear_proj.weight": ("self_attn.o_proj.weight",),
    "mlp.linear_fc1.layer_norm_weight": ("post_attention_layernorm.weight",),
    "mlp.linear_fc1.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "mlp.linear_fc2.weight": ("mlp.down_proj.weight",),
}
"""Megatron per-layer suffix (TE names) -> the HF per-layer suffixes it holds, in fused order."""

GLOBAL_TO_HF = {
    "embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "decoder.final_layernorm.weight": "model.norm.weight",
    "output_layer.weight": "lm_head.weight",
}
"""Megatron weights outside the decoder layers -> HF names."""

LOCAL_ALIASES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}
"""Local-spec suffixes -> the TE suffix of the same weight (as `slime.megatron.bridge.LOCAL_TO_TE_NAMES`)."""

VOCAB_PADDED = frozenset({"embedding.word_embeddings.weight", "output_layer.weight"})
"""Megatron weights whose rows are the padded vocabulary."""

_LAYER_KEY = re.compile(r"^decoder\.layers\.(?:(\d+)\.)?(.+)$")


def parse_key(key: str) -> tuple[bool, int | None, str]:
    """`(is_layer_weight, layer or None when stacked, suffix in TE naming)`; non-layer keys keep their name."""
    match = _LAYER_KEY.match(key)
    if match is None:
        return False, None, key
    suffix = LOCAL_ALIASES.get(match.group(2), match.group(2))
    return True, None if match.group(1) is None else int(match.group(1)), suffix


def megatron_layer_shapes(layout: ModelLayout) -> dict[str, Shape]:
    """Per-layer Megatron suffix -> global shape of one layer's tensor (fused tensors stack their HF parts)."""
    hf = layout.hf_layer_shapes()
    shapes: dict[str, Shape] = {}
    for suffix, parts in LAYER_TO_HF.items():
        if not all(p in hf for p in parts):
            continue
        rows = sum(hf[p][0] for p in parts)
        shapes[suffix] = (rows, *hf[parts[0]][1:])
    return shapes


def megatron_global_shapes(layout: ModelLayout, padded_vocab: int) -> dict[str, Shape]:
    """Megatron weights outside the layers -> global shape, with `padded_vocab` embedding rows."""
    shapes: dict[str, Shape] = {
        "embedding.word_embeddings.weight": (padded_vocab, layout.hidden_size),
        "decoder.final_layernorm.weight": (layout.hidden_size,),
    }
    if not layout.tied_embeddings:
        shapes["output_layer.weight"] = (padded_vocab, layout.hidden_size)
    return shapes


def _split_qkv(tensor: torch.Tensor, layout: ModelLayout) -> list[torch.Tensor]:
    groups = layout.num_kv_heads
    q_rows = layout.q_size // groups
    grouped = tensor.reshape(groups, -1, *tensor.shape[1:])  # [kv group, q heads + k + v rows, ...]
    kv = layout.head_dim
    q = grouped[:, :q_rows].reshape(-1, *tensor.shape[1:])
    k = grouped[:, q_rows : q_rows + kv].reshape(-1, *tensor.shape[1:])
    v = grouped[:, q_rows + kv :].reshape(-1, *tensor.shape[1:])
    return [q, k, v]


def layer_to_hf(
    suffix: str, layer: int, tensor: torch.Tensor, layout: ModelLayout
) -> Iterator[tuple[str, torch.Tensor]]:
    """HF `(name, tensor)` pairs held by one layer's Megatron tensor (views; the caller copies what it keeps)."""
    names = [f"model.layers.{layer}.{part}" for part in LAYER_TO_HF[suffix]]
    if suffix.startswith("self_attention.linear_qkv.") and "layer_norm" not in suffix:
        parts = _split_qkv(tensor, layout)
    elif suffix == "mlp.linear_fc1.weight":
        parts = list(tensor.chunk(2, dim=0))
    else:
        parts = [tensor]
    yield from zip(names, parts, strict=True)


def global_to_hf(key: str, tensor: torch.Tensor, vocab_size: int) -> tuple[str, torch.Tensor]:
    """HF name and tensor of a non-layer Megatron weight; vocabulary rows beyond `vocab_size` are dropped."""
    if key in VOCAB_PADDED:
        tensor = tensor[:vocab_size]
    return GLOBAL_TO_HF[key], tensor
