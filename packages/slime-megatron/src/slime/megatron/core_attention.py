"""Variable-length (packed THD) core attention for Megatron's local layer spec, without TransformerEngine.

Megatron's own `DotProductAttention` refuses packed sequences, and without TE there is no THD kernel. This
module is a drop-in `core_attention` submodule: it receives `query [t, heads, dim]`, `key`/`value
[t, kv_heads, dim]` and `PackedSeqParams.cu_seqlens_q`, and computes causal attention within each sequence:

- on CUDA with fp16/bf16: `torch.nn.attention.varlen.varlen_attn` (FlashAttention-2 varlen, native GQA);
- otherwise (CPU, fp32): an exact reference that runs `scaled_dot_product_attention` per sequence.

Non-packed `sbhd` input (`packed_seq_params is None`) is handled as one causal sequence per batch column.
It does not support attention dropout (RL training uses none), context parallelism or sliding windows; the
constructor rejects them. When TransformerEngine is installed, the layer spec uses TE's attention instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import divide
from slime.megatron.packed_rope import rotate_packed
from slime.types import ConfigError


class VarlenCoreAttention(MegatronModule):
    """Causal attention over packed sequences; the constructor signature is Megatron's `DotProductAttention`'s."""

    def __init__(
        self,
        config,
        layer_number: int,
        attn_mask_type,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
    ) -> None:
        super().__init__(config=config)
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        if dropout:
            raise ConfigError(f"--attention-dropout={dropout}: the varlen core attention has no dropout; use 0.0.")
        if config.context_parallel_size != 1:
            raise ConfigError(
                f"--context-parallel-size={config.context_parallel_size} needs TransformerEngine's attention; "
                "install transformer-engine or use --context-parallel-size 1."
            )
        if getattr(config, "window_size", None) is not None:
            raise ConfigError("sliding-window attention needs TransformerEngine's attention.")
        tp_size = config.tensor_model_parallel_size
        self.num_heads = divide(config.num_attention_heads, tp_size)
        self.num_kv_heads = divide(config.num_query_groups or config.num_attention_heads, tp_size)
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type=None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params=None,
    ) -> torch.Tensor:
        """THD: `[t, h, d]` in, `[t, h * d]` out. SBHD: `[s, b, h, d]` in, `[s, b, h * d]` out."""
        if attention_bias is not None:
            raise NotImplementedError("attention_bias is not supported by VarlenCoreAttention")
        if packed_seq_params is not None and packed_seq_params.qkv_format == "thd":
            if getattr(packed_seq_params, "rotary_pos_emb", None) is not None:  # see slime.megatron.packed_rope
                query, key = rotate_packed(query, key, packed_seq_params, self.config)
            cu_seqlens = packed_seq_params.cu_seqlens_q
            max_seqlen = int(packed_seq_params.max_seqlen_q)
            out = varlen_causal_attention(query, key, value, cu_seqlens, max_seqlen, self.softmax_scale)
            return out.reshape(out.size(0), -1)
        seq, batch = query.shape[:2]
        # [s, b, h, d] -> [b, h, s, d]; each batch column is one causal sequence.
        q, k, v = (x.permute(1, 2, 0, 3) for x in (query, key, value))
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.softmax_scale, enable_gqa=q.size(1) != k.size(1)
        )
        return out.permute(2, 0, 1, 3).reshape(seq, batch, -1)


def varlen_causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float,
) -> torch.Tensor:
    """Causal attention within each `[cu_seqlens[i], cu_seqlens[i+1])` slice of packed `[t, h, d]` tensors.

    Tokens past `cu_seqlens[-1]` (padding) attend to nothing and come back as zeros.
    """
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        cu = cu_seqlens.to(device=query.device, dtype=torch.int32)
        return _FlashVarlen.apply(query, key, value, cu, max_seqlen, softmax_scale)
    return _reference_varlen(query, key, value, cu_seqlens, softmax_scale)


class _FlashVarlen(torch.autograd.Function):
    """Causal FlashAttention-2 over packed sequences: the kernels `torch.nn.attention.varlen.varlen_attn` calls, with
    the same arguments, minus its `torch.library` custom-op wrapping. That wrapping (schema defaults, redispatch,
    the autograd bridge) cost 0.93 ms of host time per call on an H100, in a train step that the host bounds; this
    costs one Python autograd node. A GPU test checks the output equals `varlen_attn`'s bit for bit (and the
    gradients up to the kernel's run-to-run atomics)."""

    @staticmethod
    def forward(ctx, query, key, value, cu_seqlens, max_seqlen: int, scale: float):  # noqa: ANN001, ANN205
        out, lse, _, _, _ = torch.ops.aten._flash_attention_forward(
            query, key, value, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, 0.0, True,
            return_debug_mask=False, scale=scale, window_size_left=-1, window_size_right=0,
        )  # fmt: skip
        ctx.save_for_backward(query, key, value, out, lse, cu_seqlens)
        ctx.max_seqlen, ctx.scale = max_seqlen, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        query, key, value, out, lse, cu_seqlens = ctx.saved_tensors
        # no dropout: the RNG state and the debug mask are placeholders, as varlen_attn passes them
        rng_state = torch.zeros(2, dtype=torch.uint64, device=query.device)
        unused = torch.empty(0, device=query.device)
        dq, dk, dv = torch.ops.aten._flash_attention_backward(
            grad_out.contiguous(), query, key, value, out, lse, cu_seqlens, cu_seqlens, ctx.max_seqlen,
            ctx.max_seqlen, 0.0, True, rng_state, unused, scale=ctx.scale, window_size_left=-1, window_size_right=0,
        )  # fmt: skip
        return dq, dk, dv, None, None, None


def _reference_varlen(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor, softmax_scale: float
) -> torch.Tensor:
    # Exact: one SDPA per sequence, so no token ever sees another sequence (no -inf mask arithmetic across them).
    out = torch.zeros_like(query)
    bounds = cu_seqlens.tolist()
    gqa = query.size(1) != key.size(1)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end <= start:
            continue
        q, k, v = (x[start:end].transpose(0, 1).unsqueeze(0) for x in (query, key, value))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=softmax_scale, enable_gqa=gqa)
        out[start:end] = o.squeeze(0).transpose(0, 1)
    return out
