"""The ``isolate`` step: test each member in a fresh venv holding only what it declares.

For every member, ``uv sync --frozen --package <member> --group dev`` builds a throwaway environment
in a temp dir (``UV_PROJECT_ENVIRONMENT`` points there, so the main ``.venv`` is untouched; the uv
cache is shared, so installs are hard links). Then the member's tests run with that venv's python.
A test that imports an undeclared dependency fails here even if it passes in the all-packages venv.
This module does not use or update the green-run cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import console, pytest_exec
from .workspace import Member, Workspace


def uv_command() -> list[str]:
    """How to call uv: ``$UV`` (set by ``uv run``), ``uv`` on PATH, else ``python -m uv``."""
    found = os.environ.get("UV") or shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _isolated_env(venv: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return env


def _has_xdist(python: Path) -> bool:
    probe = [str(python), "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('xdist') is None)"]
    return subprocess.run(probe, check=False, capture_output=True).returncode == 0


def sync_command(member: Member) -> list[str]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [*uv_command(), "sync", "--frozen", "--package", member.name, "--group", "dev", "--python", version]


def isolate_member(workspace: Workspace, member: Member, pytest_args: Sequence[str] = ()) -> int:
    """Sync ``member`` alone into a temp venv and run its tests there; return an exit status."""
    console.say(f"isolate {member.label}")
    with tempfile.TemporaryDirectory(prefix=f"ci-isolate-{member.name}-") as tmp:
        venv = Path(tmp) / "venv"
        env = _isolated_env(venv)
        cmd = sync_command(member)
        console.show_command(cmd, env_note="UV_PROJECT_ENVIRONMENT=<tmp>/venv")
        synced = subprocess.run(cmd, cwd=workspace.root, env=env, check=False).returncode
        if synced != 0:
            console.say(f"isolate {member.label}: FAIL (uv sync exit {synced})")
            return synced
        if not pytest_exec.has_test_files(workspace.root, member.tests_path):
            console.warn(f"{member.label} has no tests yet (no test files in {member.tests_path}/); counted as success")
            return 0
        python = venv / "bin" / "python"
        xdist = _has_xdist(python)
        cmd = pytest_exec.command([member.tests_path], pytest_args, python=str(python), xdist=xdist, scratch=Path(tmp))
        returncode = pytest_exec.run(workspace.root, cmd, env=env)
    ok = pytest_exec.passed(returncode, f"isolate {member.label}")
    console.say(f"isolate {member.label}: {'PASS' if ok else f'FAIL (pytest exit {returncode})'}")
    return 0 if ok else returncode


def isolate(workspace: Workspace, names: Sequence[str], pytest_args: Sequence[str] = ()) -> int:
    """Isolate every named member (all of them run even after a failure); 0 only if all pass."""
    failed = [name for name in names if isolate_member(workspace, workspace.members[name], pytest_args) != 0]
    passed = len(names) - len(failed)
    console.say(f"isolate: {passed} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
