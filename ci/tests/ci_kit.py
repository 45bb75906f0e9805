"""Helpers for the runner's tests: synthetic uv workspaces, a git wrapper, paths of this checkout.

Fixtures live in ``conftest.py``; this module holds the plain functions the tests import.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

CI_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CI_DIR.parent
BUILD = CI_DIR / "build.py"

PASSING_TEST = "def test_ok():\n    assert True\n"


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fixed identity; return stdout."""
    cmd = ["git", "-C", str(root), "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def make_workspace(root: Path, members: dict[str, list[str]], with_tests: bool = True) -> Path:
    """A uv workspace at ``root``: members ``name -> [member deps]``, each with a passing test."""
    write(
        root / "pyproject.toml",
        """\
        [tool.uv.workspace]
        members = ["packages/*"]

        [tool.pytest.ini_options]
        addopts = "-p no:cacheprovider --import-mode=importlib"
        """,
    )
    write(root / ".gitignore", ".ci-cache/\n__pycache__/\n*.pyc\n.hypothesis/\n")
    write(root / "uv.lock", "version = 1\n")
    for name, deps in members.items():
        pkg = root / "packages" / name
        requirements = ", ".join(f'"{d}>=0.1"' for d in [*deps, "requests"])
        write(
            pkg / "pyproject.toml", f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = [{requirements}]\n'
        )
        write(pkg / "src" / name.replace("-", "_") / "__init__.py", f'"""{name}."""\n')
        if with_tests:
            write(pkg / "tests" / f"test_{name.replace('-', '_')}.py", PASSING_TEST)
    return root


def commit_all(root: Path, message: str = "commit") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
