"""Shared test kit: a hub-free tiny tokenizer, tiny random-init HF checkpoints, and pytest fixtures.

Importing this package is cheap: torch and transformers load only when a builder is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model", "build_tokenizer", "tiny_config"]


def __getattr__(name: str) -> Any:
    if name == "build_tokenizer":
        from slime_testkit.tokenizer import build_tokenizer

        return build_tokenizer
    if name in ("build_model", "tiny_config"):
        from slime_testkit import models

        return getattr(models, name)
    raise AttributeError(f"module 'slime_testkit' has no attribute {name!r}")
