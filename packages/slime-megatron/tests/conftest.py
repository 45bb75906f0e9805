"""Fixtures of the slime.megatron tests.

- `tests/support/` is importable as `slime_megatron_testsupport` (a unique name: every package's tests can
  share one pytest session, and a bare `support` package would collide).
- `megatron_run`: runs a scenario of `support/scenarios.py` in a world of real processes (gloo, 127.0.0.1, the
  CPU shim installed there, never here) once per test session, even under xdist: the first worker to ask runs it
  under a file lock, the others read its result.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_SUPPORT = Path(__file__).resolve().parent / "support"
if "slime_megatron_testsupport" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "slime_megatron_testsupport", _SUPPORT / "__init__.py", submodule_search_locations=[str(_SUPPORT)]
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["slime_megatron_testsupport"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder of this test run shared by all xdist workers (the session's own base temp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def megatron_run(shared_tmp: Path) -> Callable[..., dict]:
    """`megatron_run(key, scenario, world_size, **params)` -> the scenario's result, computed once per run."""
    from filelock import FileLock
    from slime_megatron_testsupport.launch import run_scenario

    def run(key: str, scenario: str, world_size: int, **params: Any) -> dict:
        import torch

        out = shared_tmp / f"megatron_{key}"
        with FileLock(str(out) + ".lock"):
            done = out / "result.pt"
            if not done.exists():
                return run_scenario(scenario, world_size, out, **params)
            return torch.load(done, weights_only=False)

    return run


@pytest.fixture(scope="session")
def tp1_suite(megatron_run: Callable[..., dict], tiny_qwen3_dir: Path) -> dict:
    """The main checks on TP=1, then the load fallback, the critic and the GPU recipe's CPU path (one process)."""
    repo_root = str(Path(__file__).resolve().parents[3])
    return megatron_run("suite_tp1", "suite", 1, model_dir=str(tiny_qwen3_dir), tp=1, repo_root=repo_root)


@pytest.fixture(scope="session")
def tp2_suite(megatron_run: Callable[..., dict], tiny_qwen3_dir: Path) -> dict:
    """The main checks on TP=2 with sequence parallelism (two processes)."""
    return megatron_run("suite_tp2", "suite", 2, model_dir=str(tiny_qwen3_dir), tp=2, sequence_parallel=True)


@pytest.fixture(params=["tp1", "tp2"])
def suite(request: pytest.FixtureRequest) -> dict:
    """Each of the TP1 and TP2 suite results in turn."""
    return request.getfixturevalue(f"{request.param}_suite")
