"""The ``lint`` step: ``ruff check .`` and ``lint-imports`` (the layer contracts in the root pyproject).

Both run even if the first fails, so one CI run shows every problem. import-linter's cache goes under
``.ci-cache/`` so the tree stays clean. This module does not fix anything and does not run tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from . import console
from .cache import CACHE_DIR


def tool(name: str) -> str:
    """A console script next to the running interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (is the dev group synced?)")
    return found


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> int:
    console.show_command(cmd)
    return subprocess.run(cmd, cwd=cwd, env=None if env is None else dict(env), check=False).returncode


def ruff(root: Path) -> int:
    return _run([sys.executable, "-m", "ruff", "check", "."], cwd=root)


def import_contracts(root: Path, config: Path | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run lint-imports on ``config`` (default: the root pyproject) from ``root``."""
    cmd = [tool("lint-imports"), "--no-logo", "--cache-dir", str(Path(root) / CACHE_DIR / "import-linter")]
    if config is not None:
        cmd += ["--config", str(config)]
    return _run(cmd, cwd=root, env=env)


def lint(root: Path) -> int:
    """Run every linter; return 0 only if all of them pass."""
    results = {"ruff": ruff(root), "lint-imports": import_contracts(root)}
    failed = [name for name, code in results.items() if code != 0]
    console.say(f"lint: FAIL ({', '.join(failed)})" if failed else "lint: PASS (ruff, lint-imports)")
    return 1 if failed else 0
