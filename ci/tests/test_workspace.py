"""Graph parsing from synthetic workspaces: member globs, names, in-workspace deps, cycles."""

from __future__ import annotations

import pytest
from ci_kit import REPO_ROOT, make_workspace, write
from runner import graph
from runner.workspace import WorkspaceError, load_workspace, requirement_name, topological_order


def test_members_names_and_workspace_deps(tmp_path):
    make_workspace(tmp_path, {"pkg-a": [], "pkg-b": ["pkg-a"], "pkg-c": ["pkg-a", "pkg-b"]})
    ws = load_workspace(tmp_path)
    assert list(ws.members) == ["pkg-a", "pkg-b", "pkg-c"]
    assert ws.members["pkg-c"].deps == ("pkg-a", "pkg-b")
    assert ws.members["pkg-a"].deps == ()  # "requests" is external, not an edge
    assert ws.members["pkg-b"].label == "//packages/pkg-b"
    assert sorted(ws.dependents_of("pkg-a")) == ["pkg-b", "pkg-c"]


def test_requirement_names_are_normalized():
    assert requirement_name("Slime_Types[extra]>=0.1,<0.2; sys_platform == 'linux'") == "slime-types"
    assert requirement_name("  torch==2.11.0") == "torch"


def test_directory_name_may_differ_from_project_name_and_exclude_is_honoured(tmp_path):
    make_workspace(tmp_path, {"one": []})
    write(tmp_path / "packages" / "dir-two" / "pyproject.toml", '[project]\nname = "Two_Pkg"\ndependencies = ["one"]\n')
    write(tmp_path / "packages" / "skipped" / "pyproject.toml", '[project]\nname = "skipped"\n')
    (tmp_path / "packages" / "not-a-member").mkdir()  # no pyproject: ignored
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(
        text.replace('["packages/*"]', '["packages/*"]\nexclude = ["packages/skipped"]')
    )
    ws = load_workspace(tmp_path)
    assert set(ws.members) == {"one", "two-pkg"}
    assert ws.members["two-pkg"].path == "packages/dir-two"
    assert ws.members["two-pkg"].deps == ("one",)


def test_cycle_is_an_error(tmp_path):
    make_workspace(tmp_path, {"x": ["y"], "y": ["x"]})
    with pytest.raises(WorkspaceError, match="cycle"):
        load_workspace(tmp_path)


def test_missing_workspace_table_is_an_error(tmp_path):
    write(tmp_path / "pyproject.toml", '[project]\nname = "solo"\n')
    with pytest.raises(WorkspaceError, match="workspace"):
        load_workspace(tmp_path)


def test_real_workspace_graph_is_layered():
    ws = load_workspace(REPO_ROOT)
    order = topological_order(ws)
    assert order[0] == "slime-types"
    assert all(order.index(dep) < order.index(name) for name in order for dep in ws.members[name].deps)
    assert "slime-types" in ws.members["slime-loss"].deps
    assert f"{len(ws.members)} member(s)" in graph.render(ws)
