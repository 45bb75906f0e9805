"""Fixtures for the runner's tests; puts ``ci/`` and ``ci/tests`` on ``sys.path``.

That makes the ``runner`` package and the ``ci_kit`` helpers importable. Nothing here touches the
real repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

for _path in (Path(__file__).resolve().parent, Path(__file__).resolve().parents[1]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ci_kit import BUILD, commit_all, git, make_workspace  # noqa: E402


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A committed git workspace: a <- b <- c chain plus an independent d."""
    root = make_workspace(tmp_path / "ws", {"pkg-a": [], "pkg-b": ["pkg-a"], "pkg-c": ["pkg-b"], "pkg-d": []})
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "initial")
    return root


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``ci/build.py`` in a subprocess; returns the completed process (stdout+stderr in .stdout)."""

    def run(root: Path, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        # The synthetic tests need no plugins (no xdist, no hypothesis): saves seconds per run.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        cmd = [sys.executable, str(BUILD), "--root", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=300)

    return run
