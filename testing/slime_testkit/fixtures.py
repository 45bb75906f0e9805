"""Session-scoped pytest fixtures that build the tiny tokenizer and tiny checkpoints once per session.

Registered by the repository's root `conftest.py`. torch and transformers are imported only when a
fixture is first used, so packages without them can run their tests with this plugin loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # models imports torch, which must stay lazy here
    from slime_testkit.models import Family


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny ChatML tokenizer only (`AutoTokenizer.from_pretrained` loads it)."""
    from slime_testkit.tokenizer import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer"))


def _build(tmp_path_factory: pytest.TempPathFactory, family: Family) -> Path:
    from slime_testkit.models import build_model

    return build_model(tmp_path_factory.mktemp(f"tiny_{family}"), family)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny Qwen3 checkpoint (seed 0, fp32, untied) with its tokenizer; treat it as read-only."""
    return _build(tmp_path_factory, "qwen3")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny Qwen2 checkpoint (seed 0, fp32, untied) with its tokenizer; treat it as read-only."""
    return _build(tmp_path_factory, "qwen2")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny Llama checkpoint (seed 0, fp32, untied) with its tokenizer; treat it as read-only."""
    return _build(tmp_path_factory, "llama")
