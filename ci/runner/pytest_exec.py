"""Running pytest: building the command line, choosing xdist workers, reading the exit status.

One invocation covers all selected test directories so xdist's workers are shared between them.
This module does not select targets or consult the cache.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import console

EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_NO_TESTS = 5  # pytest's "no tests collected"
WORKERS = "2"


def has_test_files(root: Path, tests_path: str) -> bool:
    """Whether a tests directory exists and holds at least one ``test_*.py`` / ``*_test.py`` file."""
    tests_dir = Path(root) / tests_path
    if not tests_dir.is_dir():
        return False
    return any(tests_dir.rglob("test_*.py")) or any(tests_dir.rglob("*_test.py"))


def user_chose_workers(args: Sequence[str]) -> bool:
    """Whether the user's pytest arguments already set xdist workers (or disable xdist)."""
    for i, arg in enumerate(args):
        if arg.startswith(("-n", "--numprocesses", "--dist")):
            return True
        if arg == "-p" and i + 1 < len(args) and args[i + 1] == "no:xdist":
            return True
        if arg == "-pno:xdist":
            return True
    return False


def xdist_available() -> bool:
    """Whether pytest-xdist is installed and will be loaded (plugin autoload not disabled)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return importlib.util.find_spec("xdist") is not None


def command(
    paths: Sequence[str],
    args: Sequence[str],
    python: str = sys.executable,
    xdist: bool = True,
    scratch: Path | None = None,
) -> list[str]:
    """The pytest command line for ``paths`` with the user's ``args``.

    With ``scratch`` (a fresh private directory), tmp_path dirs go under it via ``--basetemp``, so
    concurrent pytest runs on one machine never race over cleaning ``/tmp/pytest-of-<user>``.
    """
    cmd = [python, "-m", "pytest", *paths]
    if xdist and not user_chose_workers(args):
        cmd += ["-n", WORKERS]
    if scratch is not None and not any(arg.startswith("--basetemp") for arg in args):
        cmd.append(f"--basetemp={Path(scratch) / 'basetemp'}")
    return cmd + list(args)


def run(root: Path, cmd: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run a pytest command from the workspace root (so the root's pytest config applies)."""
    console.show_command(cmd)
    return subprocess.run(list(cmd), cwd=root, env=None if env is None else dict(env), check=False).returncode


def passed(returncode: int, what: str) -> bool:
    """Interpret a pytest exit status; exit 5 (nothing collected) passes with a warning."""
    if returncode == EXIT_NO_TESTS:
        console.warn(f"{what}: pytest collected no tests (exit 5); counted as success")
        return True
    return returncode == EXIT_OK
