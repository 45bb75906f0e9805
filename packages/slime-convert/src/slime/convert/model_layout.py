"""The weights an HF config implies for the dense decoder families (llama, qwen2, qwen3): names and shapes.

`ModelLayout.from_hf_config` reads the config (VLMs through `text_config`) and refuses what the converters do not
handle, naming the config field: unknown or MoE families, biases outside q/k/v, non-SiLU MLPs, head counts that do
not divide. `hf_shapes()` then lists every tensor an HF safetensors checkpoint of that model holds, with its shape.
The Megatron side of the same weights is `megatron_names`' job. Plain Python over the config; nothing is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from slime.megatron.model_shape import text_config
from slime.types import ConfigError

SUPPORTED_FAMILIES = ("llama", "qwen2", "qwen3")
"""HF `model_type`s of the dense decoders whose weights are converted tensor by tensor."""

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ModelLayout:
    """Shape-determining fields of a dense decoder's HF config."""

    family: str
    """HF `model_type`."""
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int
    """Rows of `embed_tokens` (and `lm_head`) in HF, i.e. without Megatron's padding."""
    tied_embeddings: bool
    """`tie_word_embeddings`: no `lm_head.weight` (HF) / `output_layer.weight` (Megatron) tensor."""
    qkv_bias: bool
    """q/k/v projections have biases (qwen2)."""
    qk_norm: bool
    """Per-head RMSNorm on queries and keys (qwen3)."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "ffn_hidden_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` is {getattr(self, name)} in the HF config; it must be >= 1.")
        if self.vocab_size < 1:
            raise ConfigError(
                f"`vocab_size` is {self.vocab_size}; it must be >= 1 (check config.json or --vocab-size)."
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"`num_attention_heads`={self.num_heads} is not a multiple of `num_key_value_heads`="
                f"{self.num_kv_heads} in the HF config; fix config.json."
            )

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> ModelLayout:
        """Read a transformers config (or a VLM's `text_config`); raise `ConfigError` for what is not supported."""
        cfg = text_config(hf_config)
        family = getattr(cfg, "model_type", None)
        if family not in SUPPORTED_FAMILIES:
            raise ConfigError(
                f"config.json has model_type={family!r}; tensor-by-tensor conversion supports {SUPPORTED_FAMILIES}. "
                "For other families mbridge knows (MoE), convert through the Megatron model: `megatron-to-hf`."
            )
        _refuse_unsupported(cfg, family)
        heads = int(cfg.num_attention_heads)
        return cls(
            family=family,
            num_layers=int(cfg.num_hidden_layers),
            hidden_size=int(cfg.hidden_size),
            num_heads=heads,
            num_kv_heads=int(getattr(cfg, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads),
            ffn_hidden_size=int(cfg.intermediate_size),
            vocab_size=int(cfg.vocab_size),
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
            qkv_bias=family == "qwen2",
            qk_norm=family == "qwen3",
        )

    @property
    def q_size(self) -> int:
        """Rows of `q_proj`."""
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Rows of `k_proj` (and of `v_proj`)."""
        return self.num_kv_heads * self.head_dim

    def hf_layer_shapes(self) -> dict[str, Shape]:
        """Tensor name suffix (after `model.layers.<i>.`) -> shape, for one decoder layer."""
        h, ffn = self.hidden_size, self.ffn_hidden_size
        shapes: dict[str, Shape] = {
            "input_layernorm.weight": (h,),
            "self_attn.q_proj.weight": (self.q_size, h),
            "self_attn.k_proj.weight": (self.kv_size, h),
            "self_attn.v_proj.weight": (self.kv_size, h),
            "self_attn.o_proj.weight": (h, self.q_size),
            "post_attention_layernorm.weight": (h,),
            "mlp.gate_proj.weight": (ffn, h),
            "mlp.up_proj.weight": (ffn, h),
            "mlp.down_proj.weight": (h, ffn),
        }
        if self.qkv_bias:
            shapes |= {
                "self_attn.q_proj.bias": (self.q_size,),
                "self_attn.k_proj.bias": (self.kv_size,),
                "self_attn.v_proj.bias": (self.kv_size,),
            }
        if self.qk_norm:
            shapes |= {"self_attn.q_norm.weight": (self.head_dim,), "self_attn.k_norm.weight": (self.head_dim,)}
        return shapes

    def hf_shapes(self) -> dict[str, Shape]:
        """Every tensor name of the HF checkpoint -> its shape, in HF's order (embeddings, layers, norm, head)."""
        shapes: dict[str, Shape] = {"model.embed_tokens.weight": (self.vocab_size, self.hidden_size)}
        layer = self.hf_layer_shapes()
        for i in range(self.num_layers):
            shapes |= {f"model.layers.{i}.{suffix}": shape for suffix, shape in layer.items()}
        shapes["model.norm.weight"] = (self.hidden_size,)
        if not self.tied_embeddings:
            shapes["lm_head.weight"] = (self.vocab_size, self.hidden_size)
        return shapes


def _refuse_unsupported(cfg: Any, family: str) -> None:
    """Config switches that add tensors (or change the MLP) which the name maps do not cover."""
    if getattr(cfg, "attention_bias", False) and family != "qwen2":
        raise ConfigError(
            f"config.json of this {family} model sets attention_bias=true (an o_proj bias Megatron's GPTModel does "
            "not have); such checkpoints cannot be converted."
        )
    if getattr(cfg, "mlp_bias", False):
        raise ConfigError("config.json sets mlp_bias=true; MLP biases are not supported by the converters.")
    act = getattr(cfg, "hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"config.json has hidden_act={act!r}; only SiLU-gated MLPs (swiglu) are supported.")
    if getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None):
        raise ConfigError("config.json describes a MoE model; convert it through the Megatron model: `megatron-to-hf`.")
