"""Padding-free attention over packed sequences, registered in transformers as `"slime_packed"`.

A packed micro-batch is one row `[1, N]` holding several samples back to back; `cu_seq_lens_q` (the
`[B+1]` offsets, passed through the model's `**kwargs` as flash-attention-2 style models accept them) says
where each sample starts. Attention never crosses a sample boundary and is causal within each sample.
On CUDA with bf16/fp16 it runs `torch.nn.attention.varlen.varlen_attn` (flash varlen kernel); elsewhere it
runs `scaled_dot_product_attention` once per sample, which is exactly the unpacked computation. Rotary
positions are the caller's job (`position_ids` restarting at 0 per sample). It does no KV caching, so it is
for training and scoring only, never for generation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ATTN_IMPLEMENTATION = "slime_packed"
"""The name to pass as `attn_implementation` once `register_packed_attention()` ran."""


def _segment_mask(length: int, sliding_window: int | None, device: torch.device) -> Tensor | None:
    if sliding_window is None or sliding_window >= length:
        return None
    q = torch.arange(length, device=device).unsqueeze(1)
    k = torch.arange(length, device=device).unsqueeze(0)
    # HF semantics: a query sees itself and the `sliding_window - 1` keys before it.
    return (k <= q) & (k > q - sliding_window)


def _sdpa_per_segment(
    query: Tensor, key: Tensor, value: Tensor, cu_seqlens: list[int], scaling: float | None, window: int | None
) -> Tensor:
    outputs = []
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        if end == start:
            continue
        mask = _segment_mask(end - start, window, query.device)
        outputs.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, start:end],
                value[:, :, start:end],
                attn_mask=mask,
                is_causal=mask is None,
                scale=scaling,
                enable_gqa=True,
            )
        )
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous()


def _varlen(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    cu_seqlens: Tensor,
    max_len: int,
    scaling: float | None,
    window: int | None,
) -> Tensor:
    from torch.nn.attention.varlen import varlen_attn

    num_heads, num_kv_heads = query.shape[1], key.shape[1]
    q = query[0].transpose(0, 1)
    # The varlen kernel takes equal head counts; GQA heads are expanded (cheap next to the MLP activations).
    k = key[0].transpose(0, 1).repeat_interleave(num_heads // num_kv_heads, dim=1)
    v = value[0].transpose(0, 1).repeat_interleave(num_heads // num_kv_heads, dim=1)
    cu = cu_seqlens.to(device=query.device, dtype=torch.int32)
    window_size = (-1, 0) if window is None else (window - 1, 0)
    out = varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scaling, window_size=window_size)
    return out.unsqueeze(0)


def packed_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention interface: `[1, H, N, D]` q/k/v -> `([1, N, H, D], None)`.

    `cu_seq_lens_q` (int `[B+1]`) delimits the samples; without it the row is one sample. Dropout is not
    supported (RL training runs without it) and `attention_mask` must be None (packing replaces padding).
    """
    if query.shape[0] != 1:
        raise ValueError(f"packed attention takes one packed row, got a batch of {query.shape[0]}; pack the samples.")
    if attention_mask is not None:
        raise ValueError("packed attention takes no attention_mask; pass cu_seq_lens_q and per-sample position_ids.")
    num_tokens = query.shape[2]
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None:
        cu_seqlens = torch.tensor([0, num_tokens], dtype=torch.int32)
    if query.is_cuda and query.dtype in (torch.bfloat16, torch.float16):
        max_len = kwargs.get("max_length_q") or int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        return _varlen(query, key, value, cu_seqlens, int(max_len), scaling, sliding_window), None
    bounds = [int(x) for x in cu_seqlens.tolist()]
    return _sdpa_per_segment(query, key, value, bounds, scaling, sliding_window), None


def register_packed_attention() -> str:
    """Register `"slime_packed"` with transformers (idempotent) and return the name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, packed_attention_forward)
    return ATTN_IMPLEMENTATION
