"""``--affected BASE``: changed files (committed since BASE, uncommitted, untracked) -> members + dependents."""

from __future__ import annotations

from ci_kit import commit_all, git, write
from runner import suite
from runner.affected import members_for_paths
from runner.workspace import load_workspace


def _select(root, base="main"):
    return suite.select(load_workspace(root), [], False, base)


def test_nothing_changed_selects_nothing(workspace):
    assert _select(workspace) == []


def test_committed_change_on_a_branch_selects_member_and_dependents(workspace):
    git(workspace, "checkout", "-q", "-b", "feature")
    write(workspace / "packages/pkg-b/src/pkg_b/extra.py", "X = 1\n")
    commit_all(workspace, "touch b")
    assert _select(workspace) == ["pkg-b", "pkg-c"]


def test_uncommitted_and_untracked_changes_count(workspace):
    (workspace / "packages/pkg-c/src/pkg_c/__init__.py").write_text('"""changed."""\n')  # unstaged
    assert _select(workspace) == ["pkg-c"]
    write(workspace / "packages/pkg-d/tests/test_new.py", "def test_new():\n    pass\n")  # untracked
    assert _select(workspace) == ["pkg-c", "pkg-d"]


def test_ignored_files_do_not_count(workspace):
    write(workspace / "packages/pkg-a/src/pkg_a/__pycache__/x.cpython-311.pyc", "junk")
    assert _select(workspace) == []


def test_global_inputs_affect_everything(workspace):
    everything = ["pkg-a", "pkg-b", "pkg-c", "pkg-d"]
    for path in ["uv.lock", "pyproject.toml", "conftest.py", "testing/helpers.py"]:
        ws = load_workspace(workspace)
        assert sorted(members_for_paths(ws, [path])) == everything, path
    (workspace / "uv.lock").write_text("version = 1\n# changed\n")
    assert _select(workspace) == everything


def test_other_root_files_affect_nothing(workspace):
    write(workspace / "README.md", "docs\n")
    write(workspace / "ci/build.py", "# not a member\n")
    assert _select(workspace) == []


def test_affected_combines_with_explicit_targets(workspace):
    write(workspace / "packages/pkg-d/src/pkg_d/new.py", "Y = 2\n")
    assert suite.select(load_workspace(workspace), ["pkg-b"], False, "main") == ["pkg-b", "pkg-c", "pkg-d"]


def test_affected_end_to_end(workspace, build):
    git(workspace, "checkout", "-q", "-b", "feature")
    write(workspace / "packages/pkg-a/src/pkg_a/more.py", "Z = 3\n")
    commit_all(workspace, "touch a")
    result = build(workspace, "test", "--affected", "main")
    assert result.returncode == 0, result.stdout + result.stderr
    ran = {line.split()[2] for line in result.stdout.splitlines() if line.startswith("[ci]   RUN")}
    assert ran == {"//packages/pkg-a", "//packages/pkg-b", "//packages/pkg-c"}
