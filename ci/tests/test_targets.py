"""Target labels and closures: a target is tested together with everything that depends on it."""

from __future__ import annotations

import pytest
from ci_kit import make_workspace
from runner.targets import TargetError, dependencies_of, ordered, resolve, with_dependents
from runner.workspace import load_workspace


@pytest.fixture
def ws(tmp_path):
    members = {"slime-types": [], "slime-loss": ["slime-types"], "slime-fsdp": ["slime-loss"], "slime-x": []}
    return load_workspace(make_workspace(tmp_path, members))


@pytest.mark.parametrize(
    "label", ["//packages/slime-loss", "//packages/slime-loss/", "slime-loss", "loss", "Slime_Loss"]
)
def test_label_forms(ws, label):
    assert resolve(ws, label) == "slime-loss"


@pytest.mark.parametrize("label", ["nope", "//packages/nope", "slime"])
def test_unknown_label(ws, label):
    with pytest.raises(TargetError):
        resolve(ws, label)


def test_dependents_are_transitive(ws):
    assert with_dependents(ws, ["slime-types"]) == {"slime-types", "slime-loss", "slime-fsdp"}
    assert with_dependents(ws, ["slime-loss"]) == {"slime-loss", "slime-fsdp"}
    assert with_dependents(ws, ["slime-fsdp"]) == {"slime-fsdp"}
    assert with_dependents(ws, ["slime-x", "slime-fsdp"]) == {"slime-x", "slime-fsdp"}


def test_dependencies_are_transitive(ws):
    assert dependencies_of(ws, "slime-fsdp") == {"slime-loss", "slime-types"}
    assert dependencies_of(ws, "slime-types") == set()


def test_ordered_follows_workspace_order(ws):
    assert ordered(ws, {"slime-x", "slime-fsdp"}) == ["slime-fsdp", "slime-x"]
