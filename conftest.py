"""Repository-wide pytest setup for every package's tests.

- Registers the tiny-model fixtures of `slime_testkit.fixtures` (`tiny_tokenizer_dir`, `tiny_qwen3_dir`, ...).
- Registers the Hypothesis profiles `ci` (the default) and `dev`; set `HYPOTHESIS_PROFILE=dev` to switch.
- Skips tests marked `@pytest.mark.gpu` when CUDA is unavailable.

torch and transformers are never imported here unless needed, so torch-free packages can use this file.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

# The root pyproject's `pythonpath = ["testing"]` already does this; kept for runs under another rootdir.
_TESTKIT_ROOT = str(Path(__file__).resolve().parent / "testing")
if _TESTKIT_ROOT not in sys.path:
    sys.path.insert(0, _TESTKIT_ROOT)

pytest_plugins = ["slime_testkit.fixtures"]

GPU_SKIP_REASON = "needs an NVIDIA GPU (torch.cuda.is_available() is False)"


def _register_hypothesis_profiles() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )
    settings.register_profile("dev", max_examples=500, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_register_hypothesis_profiles()


def _cuda_is_available() -> bool:
    # A probe, not a test: a missing driver may warn, and filterwarnings=error must not turn that into an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items or _cuda_is_available():
        return
    skip_gpu = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in gpu_items:
        item.add_marker(skip_gpu)
