"""Rotary embeddings for packed (THD) micro-batches without TransformerEngine, in one vectorised pass per layer.

Megatron's unfused THD path (`rope_utils._apply_rotary_pos_emb_thd`) reads the sequence lengths back to the host
(`.tolist()`, a device synchronisation) and rotates each packed sequence separately, for the query and the key of
every layer. On an H100 that made the 0.6B train step host-bound: the GPU was busy 1.34 s of a 2.96 s step, with
4,792 `cat` calls per step (`ci/gpu/results/megatron_train_profile_h100.txt`).

Here every token carries its position inside its sequence (`PackedSeqParamsWithPositions.positions`, built on the
host with the micro-batch), so the frequencies of the whole row are one gather, and the rotation is the arithmetic
of Megatron's bshd rotation (`_apply_rotary_pos_emb_bshd`) over `[T, 1, h, d]`, with the row's cos and sin computed
once for all layers. For context-parallel size 1 this is the arithmetic Megatron's THD path does, without the
per-sequence loop.

`PackedRopeSelfAttention` takes the rotary embedding out of Megatron's attention for such rows and passes it, with
the positions, inside the packed-sequence parameters to `VarlenCoreAttention`, which rotates q and k first; so a
recomputed core attention (`--recompute-granularity selective`) rotates again. Anything else (TE's fused RoPE,
context parallelism, multimodal RoPE, inference) goes through Megatron's path unchanged. This module does not
touch the SBHD path, which has no per-sequence loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import _yarn_get_concentration_factor_from_config
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.attention import SelfAttention
from slime.megatron.fused_elementwise import elementwise_fused, rotate


@dataclasses.dataclass
class PackedSeqParamsWithPositions(PackedSeqParams):
    """Megatron's THD parameters plus what the one-pass rotation needs."""

    positions: torch.Tensor | None = None
    """`[T]` int64: each token's position inside its own sequence (padding counts as a sequence)."""
    rotary_pos_emb: tuple[torch.Tensor, torch.Tensor] | None = None
    """(query, key) frequencies `[max_seqlen, 1, 1, d]`, set by `PackedRopeSelfAttention` for the core attention."""
    rope_cache: dict = dataclasses.field(default_factory=dict)
    """The row's cos / sin per frequency table, computed by the first layer and reused by the others (copies made
    with `dataclasses.replace` share it; a new row's parameters start empty)."""

    @classmethod
    def for_row(
        cls, cu_seqlens: torch.Tensor, max_seqlen: int, positions: torch.Tensor
    ) -> PackedSeqParamsWithPositions:
        """THD parameters of one packed row (self-attention: the same offsets for queries and keys)."""
        return cls(
            qkv_format="thd",
            cu_seqlens_q=cu_seqlens,
            cu_seqlens_kv=cu_seqlens,
            max_seqlen_q=max_seqlen,
            max_seqlen_kv=max_seqlen,
            positions=positions,
        )


class PackedRopeSelfAttention(SelfAttention):
    """Megatron's `SelfAttention`; for packed rows the core attention applies RoPE (see the module docstring)."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        params = kwargs.get("packed_seq_params")
        rotary = kwargs.get("rotary_pos_emb")
        if rotary is not None and self._rotates_packed(params, kwargs.get("inference_context")):
            pair = rotary if isinstance(rotary, tuple) else (rotary, rotary)
            kwargs["packed_seq_params"] = dataclasses.replace(params, rotary_pos_emb=pair)
            kwargs["rotary_pos_emb"] = None
        return super().forward(hidden_states, *args, **kwargs)

    def _rotates_packed(self, params: Any, inference_context: Any) -> bool:
        return (
            isinstance(params, PackedSeqParamsWithPositions)
            and params.positions is not None
            and params.qkv_format == "thd"
            and inference_context is None
            and not self.config.apply_rope_fusion
            and not self.config.multi_latent_attention
            and self.pg_collection.cp.size() == 1
        )


def rotate_packed(
    query: torch.Tensor, key: torch.Tensor, params: PackedSeqParamsWithPositions, config: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate `[T, h, d]` query and key by the frequencies of each token's in-sequence position.

    The arithmetic is Megatron's unfused bshd rotation (`_apply_rotary_pos_emb_bshd`), bit for bit; its cos and sin
    are computed once per row (`params.rope_cache`) instead of per layer, query and key: on an H100 the rotation was
    0.56 ms of host time per layer and micro-batch, most of it gathers, cos and sin that every layer repeated."""
    assert params.rotary_pos_emb is not None and params.positions is not None
    rotated = []
    for tensor, freqs in zip((query, key), params.rotary_pos_emb, strict=True):
        if freqs is None:
            rotated.append(tensor)
            continue
        cos, sin = _cos_sin(params, freqs, config, tensor.dtype)
        rot_dim = freqs.shape[-1]
        t = tensor.unsqueeze(1)  # [T, 1, h, d]: the bshd layout Megatron's rotate-half expects
        head, rest = t[..., :rot_dim], t[..., rot_dim:]
        out = rotate(head, cos, sin, config.rotary_interleaved, compiled=elementwise_fused(config))
        if rest.size(-1):
            out = torch.cat((out, rest), dim=-1)
        rotated.append(out.squeeze(1))
    return rotated[0], rotated[1]


def _cos_sin(
    params: PackedSeqParamsWithPositions, freqs: torch.Tensor, config: Any, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[T, 1, 1, d]` cos and sin of the row's per-token frequencies in `dtype`, as Megatron computes them."""
    key = (freqs.data_ptr(), tuple(freqs.shape), dtype)
    cached = params.rope_cache.get(key)
    if cached is None or cached[0] is not freqs:  # holding `freqs` keeps its address from being reused
        mscale = _yarn_get_concentration_factor_from_config(config)
        per_token = freqs[params.positions]
        cached = (freqs, (torch.cos(per_token) * mscale).to(dtype), (torch.sin(per_token) * mscale).to(dtype))
        params.rope_cache[key] = cached
    return cached[1], cached[2]
