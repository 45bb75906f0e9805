"""Fixtures of the slime.megatron tests.

- `tests/support/` is importable as `slime_megatron_testsupport` (a unique name: every package's tests can
  share one pytest session, and a bare `support` package would collide).
- `megatron_worlds`: starts the scenario worlds of `support/scenarios.py` (real processes, gloo on 127.0.0.1, the
  CPU shim installed there, never here) once per test run, even under xdist, all at once so they run side by side;
  each result fixture then waits for its own world.
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
def megatron_worlds(shared_tmp: Path, tiny_qwen3_dir: Path, request: pytest.FixtureRequest) -> Callable[[str], dict]:
    """Starts every test world once per run (the first xdist worker to get here starts them all, side by side);
    returns `wait(key) -> result`."""
    from filelock import FileLock
    from slime_megatron_testsupport.launch import start_scenario, wait_all_started, wait_scenario

    repo_root = str(Path(__file__).resolve().parents[3])
    worlds: dict[str, tuple[str, int, dict[str, Any]]] = {
        # TP1 also runs the load fallback, the critic and the GPU recipe's CPU path (one megatron import).
        "suite_tp1": ("suite", 1, {"model_dir": str(tiny_qwen3_dir), "tp": 1, "repo_root": repo_root}),
        # TP2 with sequence parallelism, then TP1 x DP2 and PP2 in the same two processes.
        "suite_tp2": ("suite", 2, {"model_dir": str(tiny_qwen3_dir), "tp": 2, "sequence_parallel": True}),
        # Megatron's torch.compile'd fusions (on for GPUs) forced on here: inductor's CPU backend, ~1 min.
        "fused": ("fused_elementwise", 1, {"model_dir": str(tiny_qwen3_dir)}),
    }
    with FileLock(str(shared_tmp / "megatron_worlds.lock")):
        if not (shared_tmp / "megatron_worlds.started").exists():
            for key, (scenario, size, params) in worlds.items():
                start_scenario(scenario, size, shared_tmp / f"megatron_{key}", **params)
            (shared_tmp / "megatron_worlds.started").write_text("")
            # At the end of this worker's session, wait for the worlds it started (other workers may be reading).
            request.addfinalizer(wait_all_started)

    def wait(key: str) -> dict:
        return wait_scenario(shared_tmp / f"megatron_{key}", worlds[key][1])

    return wait


@pytest.fixture(scope="session")
def tp1_suite(megatron_worlds: Callable[[str], dict]) -> dict:
    """The TP=1 world's results (see `megatron_worlds`)."""
    return megatron_worlds("suite_tp1")


@pytest.fixture(scope="session")
def tp2_suite(megatron_worlds: Callable[[str], dict]) -> dict:
    """The TP=2 (+ sequence parallel, then DP=2) world's results."""
    return megatron_worlds("suite_tp2")


@pytest.fixture(scope="session")
def fused_world(megatron_worlds: Callable[[str], dict]) -> dict:
    """The eager-vs-fused world's results (see `support/fused.py`)."""
    return megatron_worlds("fused")


@pytest.fixture(params=["tp1", "tp2"])
def suite(request: pytest.FixtureRequest) -> dict:
    """Each of the TP1 and TP2 suite results in turn."""
    return request.getfixturevalue(f"{request.param}_suite")
