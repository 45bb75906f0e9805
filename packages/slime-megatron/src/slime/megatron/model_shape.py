"""Model shape from the HF config: fill Megatron's shape flags, and refuse flags that contradict it.

slime requires the shape as Megatron flags (`scripts/models/*.sh`) and only partly checks them against
`--hf-checkpoint`. Here the HF config is the source of truth: an absent shape flag takes the HF value, a given one
must agree with it (floats to a relative 1e-6), otherwise `ConfigError` names the flag, both values and the fix.
Supported HF families are the dense/MoE decoder families mbridge knows (llama, qwen2, qwen3, their MoE
variants); VLM configs are read through `text_config`. No torch, no megatron.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from slime.types import ConfigError


def _get(cfg: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return value
    return default


def _rope_theta(cfg: Any) -> float | None:
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return _get(cfg, "rope_theta", default=theta)


def _head_dim(cfg: Any) -> int:
    return int(_get(cfg, "head_dim", default=cfg.hidden_size // cfg.num_attention_heads))


def _kv_heads(cfg: Any) -> int:
    return int(_get(cfg, "num_key_value_heads", default=cfg.num_attention_heads))


def _num_experts(cfg: Any) -> int | None:
    return _get(cfg, "num_experts", "n_routed_experts", "num_local_experts")


def _qkv_bias(cfg: Any) -> bool:
    if cfg.model_type in ("qwen2", "qwen2_moe"):
        return True
    return bool(getattr(cfg, "attention_bias", False))


# Megatron dest -> HF-derived expected value (None: the HF config does not say; the flag is then not checked).
_FROM_HF: dict[str, Callable[[Any], Any]] = {
    "num_layers": lambda c: c.num_hidden_layers,
    "hidden_size": lambda c: c.hidden_size,
    "ffn_hidden_size": lambda c: _get(c, "intermediate_size"),
    "num_attention_heads": lambda c: c.num_attention_heads,
    "num_query_groups": _kv_heads,
    "group_query_attention": lambda c: _kv_heads(c) != c.num_attention_heads,
    "kv_channels": _head_dim,
    "vocab_size": lambda c: c.vocab_size,
    "norm_epsilon": lambda c: _get(c, "rms_norm_eps", "layer_norm_eps"),
    "normalization": lambda c: "RMSNorm" if getattr(c, "rms_norm_eps", None) is not None else None,
    "rotary_base": _rope_theta,
    "position_embedding_type": lambda c: "rope" if _rope_theta(c) is not None else None,
    "use_rotary_position_embeddings": lambda c: True if _rope_theta(c) is not None else None,
    "untie_embeddings_and_output_weights": lambda c: not bool(getattr(c, "tie_word_embeddings", False)),
    "swiglu": lambda c: _get(c, "hidden_act", "hidden_activation") == "silu",
    "add_bias_linear": lambda c: bool(getattr(c, "mlp_bias", False)),
    "add_qkv_bias": _qkv_bias,
    "qk_layernorm": lambda c: c.model_type.startswith("qwen3"),
    "num_experts": _num_experts,
    "moe_ffn_hidden_size": lambda c: _get(c, "moe_intermediate_size") if _num_experts(c) else None,
    "moe_router_topk": lambda c: _get(c, "num_experts_per_tok") if _num_experts(c) else None,
    "moe_shared_expert_intermediate_size": lambda c: _get(c, "shared_expert_intermediate_size"),
}
SHAPE_DESTS = frozenset(_FROM_HF)
"""Megatron flags (dests) that the HF config determines."""


def _flag(dest: str) -> str:
    return "--disable-bias-linear" if dest == "add_bias_linear" else "--" + dest.replace("_", "-")


def _agree(given: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(given, bool):
        return bool(given) == bool(expected)
    if isinstance(expected, int | float) and isinstance(given, int | float):
        return math.isclose(float(given), float(expected), rel_tol=1e-6)
    return given == expected


def text_config(hf_config: Any) -> Any:
    """The language-model part of an HF config (VLMs nest it in `text_config`)."""
    return getattr(hf_config, "text_config", None) or hf_config


def resolve_model_shape(namespace: argparse.Namespace, hf_config: Any) -> argparse.Namespace:
    """Return a copy of the Megatron namespace with every shape flag set from `hf_config`.

    Raises:
        ConfigError: a shape flag given on the command line disagrees with the HF config.
    """
    cfg = text_config(hf_config)
    explicit = getattr(namespace, "explicit", frozenset())
    resolved = argparse.Namespace(**vars(namespace))
    problems = []
    for dest, derive in _FROM_HF.items():
        expected = derive(cfg)
        if expected is None:
            continue
        if dest in explicit and not _agree(getattr(namespace, dest), expected):
            problems.append(f"{_flag(dest)}: given {getattr(namespace, dest)!r}, HF config has {expected!r}")
        setattr(resolved, dest, expected)
    if problems:
        raise ConfigError(
            "model-shape flags contradict --hf-checkpoint's config.json: "
            + "; ".join(problems)
            + ". Drop these flags (the shape is read from the HF config) or point --hf-checkpoint at the right model."
        )
    return resolved
