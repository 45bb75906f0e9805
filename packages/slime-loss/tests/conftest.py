"""Makes `tests/reference/` importable as `slime_loss_reference` (a unique name: other packages' tests run
in the same session, and a bare `reference` package would collide)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

if "slime_loss_reference" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "slime_loss_reference", _REFERENCE_DIR / "__init__.py", submodule_search_locations=[str(_REFERENCE_DIR)]
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["slime_loss_reference"] = _module
    _spec.loader.exec_module(_module)
