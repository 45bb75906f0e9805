"""Reading scenario results in tests."""

from __future__ import annotations

from typing import Any

import pytest


def ok(result: dict, check: str) -> Any:
    """The value a scenario check produced; fails the test with the worker's traceback if the check raised."""
    value = result[check]
    if isinstance(value, dict) and set(value) == {"error"}:
        pytest.fail(f"check {check!r} raised in the worker:\n{value['error']}")
    return value


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two name -> tensor dicts with the same names."""
    assert sorted(a) == sorted(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)
