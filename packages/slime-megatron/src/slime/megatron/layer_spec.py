"""Which Megatron layer implementation a GPT model is built with: TransformerEngine's when installed, else local.

The local spec is Megatron's `get_gpt_layer_local_spec` with two substitutions, so that packed (THD) training
works on GPUs without TE (and on CPU in tests):

- `core_attention` -> `VarlenCoreAttention` (Megatron's `DotProductAttention` refuses packed sequences), and the
  attention module -> `PackedRopeSelfAttention`, which lets it rotate packed rows in one pass
  (`slime.megatron.packed_rope`);
- every RMSNorm -> `TorchRMSNorm`, a `torch.nn.RMSNorm` whose weight carries Megatron's `sequence_parallel`
  attribute, so `--sequence-parallel` works (Megatron's `WrappedTorchNorm` asserts it off without Apex/TE, while
  `finalize_model_grads` already knows how to all-reduce such weights' gradients over TP). With the compiled
  fusions on (`slime.megatron.fused_elementwise`) it is the compiled `CompiledRMSNorm`;
- with `wgrad_fusion`, the attention's and the dense MLP's linear layers -> `slime.megatron.wgrad_fusion`'s, whose
  weight gradients accumulate straight into DDP's fp32 `main_grad` (Megatron's gradient-accumulation fusion
  without apex).

It does not pick kernels for MoE experts beyond what the local spec offers (sequential experts).
"""

from __future__ import annotations

import dataclasses
import importlib.util

import torch

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttention
from megatron.core.transformer.mlp import MLP
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from slime.megatron.core_attention import VarlenCoreAttention
from slime.megatron.fused_elementwise import CompiledRMSNorm, elementwise_fused
from slime.megatron.packed_rope import PackedRopeSelfAttention
from slime.megatron.wgrad_fusion import FusedWgradColumnParallelLinear, FusedWgradRowParallelLinear


def transformer_engine_available() -> bool:
    """Whether `transformer_engine` can be imported (then TE's fused layers and THD attention are used)."""
    return importlib.util.find_spec("transformer_engine") is not None


class TorchRMSNorm:
    """`torch.nn.RMSNorm` built with Megatron's norm signature; its weight is marked for sequence parallelism."""

    def __new__(
        cls,
        config,
        hidden_size: int,
        eps: float = 1e-5,
        persist_layer_norm: bool = False,
        zero_centered_gamma: bool = False,
        normalization: str = "RMSNorm",
    ) -> torch.nn.RMSNorm:
        if config.normalization != "RMSNorm" or config.layernorm_zero_centered_gamma:
            raise NotImplementedError("the local spec supports RMSNorm without zero-centred gamma only")
        kind = CompiledRMSNorm if elementwise_fused(config) else torch.nn.RMSNorm
        norm = kind(hidden_size, eps=eps, dtype=config.params_dtype)
        # finalize_model_grads sums over TP the grads of weights flagged so: each TP rank saw a sequence shard.
        norm.weight.sequence_parallel = config.sequence_parallel
        return norm


def _fused_wgrad(linear: type) -> type:
    """The gradient-accumulation-fused class for one of Megatron's linear classes (others are kept)."""
    return {ColumnParallelLinear: FusedWgradColumnParallelLinear, RowParallelLinear: FusedWgradRowParallelLinear}.get(
        linear, linear
    )


def local_block_spec(config, vp_stage: int | None = None, *, wgrad_fusion: bool = False) -> TransformerBlockSubmodules:
    """The decoder block spec for `config` without TransformerEngine (see the module docstring)."""
    layer = get_gpt_layer_local_spec(
        num_experts=config.num_moe_experts,
        moe_grouped_gemm=config.moe_grouped_gemm,
        qk_layernorm=config.qk_layernorm,
        normalization="RMSNorm",
    )
    attention = layer.submodules.self_attention
    attention_subs = dataclasses.replace(
        attention.submodules,
        core_attention=VarlenCoreAttention,
        q_layernorm=TorchRMSNorm if config.qk_layernorm else attention.submodules.q_layernorm,
        k_layernorm=TorchRMSNorm if config.qk_layernorm else attention.submodules.k_layernorm,
    )
    mlp = layer.submodules.mlp
    if wgrad_fusion:
        attention_subs = dataclasses.replace(
            attention_subs,
            linear_qkv=_fused_wgrad(attention_subs.linear_qkv),
            linear_proj=_fused_wgrad(attention_subs.linear_proj),
        )
        if mlp.module is MLP:  # dense layers; MoE experts keep Megatron's linears
            fc = dataclasses.replace(
                mlp.submodules,
                linear_fc1=_fused_wgrad(mlp.submodules.linear_fc1),
                linear_fc2=_fused_wgrad(mlp.submodules.linear_fc2),
            )
            mlp = dataclasses.replace(mlp, submodules=fc)
    # MLA keeps Megatron's own attention class (its RoPE is applied differently)
    attention_module = PackedRopeSelfAttention if attention.module is SelfAttention else attention.module
    layer_subs = dataclasses.replace(
        layer.submodules,
        input_layernorm=TorchRMSNorm,
        pre_mlp_layernorm=TorchRMSNorm,
        mlp=mlp,
        self_attention=dataclasses.replace(attention, module=attention_module, submodules=attention_subs),
    )
    layer = dataclasses.replace(layer, submodules=layer_subs)
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=TorchRMSNorm)
