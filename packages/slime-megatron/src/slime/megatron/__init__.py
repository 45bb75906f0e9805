"""slime.megatron: the Megatron-core actor (and PPO critic) behind `slime.types.PolicyTrainer`.

Importing this package is cheap: the flag parser and the HF shape check are plain Python, and the names that
need megatron-core (`MegatronPolicy`, `ModelBridge`, `vocab_parallel_log_probs`) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from slime.megatron.actor_config import ActorConfig
from slime.megatron.megatron_args import build_parser, parse_megatron_args
from slime.megatron.model_shape import resolve_model_shape

_LAZY = {
    "MegatronPolicy": "slime.megatron.policy",
    "ModelBridge": "slime.megatron.bridge",
    "vocab_parallel_log_probs": "slime.megatron.vocab_parallel",
    "VarlenCoreAttention": "slime.megatron.core_attention",
}
__all__ = ["ActorConfig", "build_parser", "parse_megatron_args", "resolve_model_shape", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slime.megatron' has no attribute {name!r}")
