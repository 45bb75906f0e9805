"""The layer contracts bite: lint-imports, run on a temp copy of the real src trees, fails on a forbidden import.

The copy sits first on ``PYTHONPATH`` so its ``slime.*`` namespace portions shadow the editable installs;
the config is the real root pyproject's ``[tool.importlinter]``.
"""

from __future__ import annotations

import os
import shutil
import tomllib

import pytest
from ci_kit import REPO_ROOT
from runner import lint
from runner.workspace import load_workspace

CONFIG = REPO_ROOT / "pyproject.toml"


def _contracts() -> list[dict]:
    with CONFIG.open("rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]["contracts"]


def _contract_name(kind: str, forbidden: str | None = None) -> str:
    for contract in _contracts():
        if contract["type"] == kind and (forbidden is None or forbidden in contract.get("forbidden_modules", [])):
            if "slime.types" in contract.get("source_modules", ["slime.types"]):
                return contract["name"]
    raise AssertionError(f"no {kind} contract covering slime.types in {CONFIG}")


@pytest.fixture
def src_copy(tmp_path):
    """A copy of every member's src tree; returns (root, env with PYTHONPATH pointing at the copies)."""
    paths = []
    for member in load_workspace(REPO_ROOT).members.values():
        dest = tmp_path / member.path / "src"
        shutil.copytree(REPO_ROOT / member.path / "src", dest, ignore=shutil.ignore_patterns("__pycache__"))
        paths.append(str(dest))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return tmp_path, env


def _lint(src_copy, capfd) -> tuple[int, str]:
    root, env = src_copy
    code = lint.import_contracts(root, config=CONFIG, env=env)
    out, err = capfd.readouterr()
    return code, out + err


def _throwaway(src_copy, body: str) -> None:
    root, _ = src_copy
    (root / "packages/slime-types/src/slime/types/_ci_throwaway.py").write_text(body)


def test_clean_copy_keeps_every_contract(src_copy, capfd):
    code, out = _lint(src_copy, capfd)
    assert code == 0, out
    assert "BROKEN" not in out
    assert "0 broken" in out


def test_torch_in_types_breaks_the_no_torch_contract(src_copy, capfd):
    _throwaway(src_copy, "import torch\n")
    code, out = _lint(src_copy, capfd)
    assert code != 0, out
    assert f"{_contract_name('forbidden', 'torch')} BROKEN" in out
    assert "slime.types._ci_throwaway -> torch" in out


def test_types_importing_loss_breaks_the_layers_contract(src_copy, capfd):
    _throwaway(src_copy, "import slime.loss\n")
    code, out = _lint(src_copy, capfd)
    assert code != 0, out
    assert f"{_contract_name('layers')} BROKEN" in out
    assert "slime.types._ci_throwaway -> slime.loss" in out
