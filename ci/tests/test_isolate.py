"""``isolate``: a member's tests run in a venv holding only its declared deps, so an undeclared import fails.

Uses a temp copy of the real workspace (root pyproject, uv.lock, every member's pyproject/README/src,
no tests) and the real ``slime-types`` member, which has no external dependencies; the shared uv cache
makes the sync take well under a second.
"""

from __future__ import annotations

import shutil

import pytest
from ci_kit import REPO_ROOT, write
from runner import isolate
from runner.workspace import load_workspace

NO_PLUGINS = ["-p", "no:xdist", "-p", "no:hypothesispytest"]


@pytest.fixture
def copy(tmp_path):
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    for member in load_workspace(REPO_ROOT).members.values():
        dest = tmp_path / member.path
        shutil.copytree(REPO_ROOT / member.path, dest, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    return load_workspace(tmp_path)


def _isolate(ws, capfd) -> tuple[int, str]:
    code = isolate.isolate(ws, ["slime-types"], NO_PLUGINS)
    out, err = capfd.readouterr()
    return code, out + err


def test_declared_imports_pass_in_isolation(copy, capfd):
    write(copy.root / "packages/slime-types/tests/test_probe.py", "import slime.types\n\ndef test_ok():\n    pass\n")
    code, out = _isolate(copy, capfd)
    assert code == 0, out
    assert "1 passed" in out
    assert "isolate //packages/slime-types: PASS" in out


def test_undeclared_import_fails_in_isolation(copy, capfd):
    # torch is in the all-packages venv (so this passes there) but slime-types does not declare it.
    write(copy.root / "packages/slime-types/tests/test_probe.py", "import torch\n\ndef test_uses_torch():\n    pass\n")
    code, out = _isolate(copy, capfd)
    assert code != 0, out
    assert "No module named 'torch'" in out
    assert "isolate: 0 passed, 1 failed: slime-types" in out


def test_sync_command_keeps_main_venv_untouched():
    member = load_workspace(REPO_ROOT).members["slime-types"]
    cmd = isolate.sync_command(member)
    assert " ".join(cmd).endswith("sync --frozen --package slime-types --group dev --python " + cmd[-1])
    assert isolate._isolated_env(REPO_ROOT / "x" / "venv")["UV_PROJECT_ENVIRONMENT"].endswith("venv")
