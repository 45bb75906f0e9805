"""Rotary embeddings for packed (THD) micro-batches without TransformerEngine, in one vectorised pass per layer.

Megatron's unfused THD path (`rope_utils._apply_rotary_pos_emb_thd`) reads the sequence lengths back to the host
(`.tolist()`, a device synchronisation) and rotates each packed sequence separately, for the query and the key of
every layer. On an H100 that made the 0.6B train step host-bound: the GPU was busy 1.34 s of a 2.96 s step, with
4,792 `cat` calls per step (`ci/gpu/results/megatron_train_profile_h100.txt`).

Here every token carries its position inside its sequence (`PackedSeqParamsWithPositions.positions`, built on the
host with the micro-batch), so the frequencies of the whole row are one gather, and the rotation is Megatron's own
bshd rotation (`apply_rotary_pos_emb` with `cu_seqlens=None`) over `[T, 1, h, d]`. For context-parallel size 1 this
is the arithmetic Megatron's THD path does, without the per-sequence loop.

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

from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb
from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import _yarn_get_concentration_factor_from_config
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.attention import SelfAttention


@dataclasses.dataclass
class PackedSeqParamsWithPositions(PackedSeqParams):
    """Megatron's THD parameters plus what the one-pass rotation needs."""

    positions: torch.Tensor | None = None
    """`[T]` int64: each token's position inside its own sequence (padding counts as a sequence)."""
    rotary_pos_emb: tuple[torch.Tensor, torch.Tensor] | None = None
    """(query, key) frequencies `[max_seqlen, 1, 1, d]`, set by `PackedRopeSelfAttention` for the core attention."""
    rotary_cp_group: Any = None
    """The attention's context-parallel group (size 1 here), which Megatron's rotation asks for."""


class PackedRopeSelfAttention(SelfAttention):
    """Megatron's `SelfAttention`; for packed rows the core attention applies RoPE (see the module docstring)."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        params = kwargs.get("packed_seq_params")
        rotary = kwargs.get("rotary_pos_emb")
        if rotary is not None and self._rotates_packed(params, kwargs.get("inference_context")):
            pair = rotary if isinstance(rotary, tuple) else (rotary, rotary)
            kwargs["packed_seq_params"] = dataclasses.replace(
                params, rotary_pos_emb=pair, rotary_cp_group=self.pg_collection.cp
            )
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
    """Rotate `[T, h, d]` query and key by the frequencies of each token's in-sequence position."""
    assert params.rotary_pos_emb is not None and params.positions is not None
    mscale = _yarn_get_concentration_factor_from_config(config)
    rotated = []
    for tensor, freqs in zip((query, key), params.rotary_pos_emb, strict=True):
        if freqs is None:
            rotated.append(tensor)
            continue
        per_token = freqs[params.positions]  # [T, 1, 1, d]
        group = params.rotary_cp_group
        out = apply_rotary_pos_emb(tensor.unsqueeze(1), per_token, config, mscale=mscale, cp_group=group)
        rotated.append(out.squeeze(1))
    return rotated[0], rotated[1]
