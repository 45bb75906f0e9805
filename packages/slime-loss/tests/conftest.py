"""Test setup for slime.loss.

- Makes `tests/reference/` importable as `slime_loss_reference` (a unique name: other packages' tests may
  run in the same session, and a bare `reference` package would collide).
- Runs each test on one intra-op thread (see `_single_intra_op_thread`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

if "slime_loss_reference" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "slime_loss_reference", _REFERENCE_DIR / "__init__.py", submodule_search_locations=[str(_REFERENCE_DIR)]
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["slime_loss_reference"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture(autouse=True)
def _single_intra_op_thread():
    """Run this package's tiny tensors on one intra-op thread.

    Every tensor here has a few dozen elements; on a shared 2-core machine running `-n 2`, torch's thread
    pool only adds contention (a 20-element op took milliseconds instead of microseconds).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
