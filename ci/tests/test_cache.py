"""The green-run cache: a second run skips, a changed input re-runs (with dependents), --no-cache forces."""

from __future__ import annotations

from ci_kit import make_workspace, write


def _status(result) -> dict[str, str]:
    """``{label: "RUN" | "CACHED"}`` from the runner's output."""
    found = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "[ci]" and parts[1] in ("RUN", "CACHED"):
            found[parts[2].removeprefix("//packages/")] = parts[1]
    return found


def _ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return _status(result)


def test_second_run_is_cached_and_a_change_reruns_dependents(workspace, build):
    everything = {"pkg-a": "RUN", "pkg-b": "RUN", "pkg-c": "RUN", "pkg-d": "RUN"}
    first = build(workspace, "test", "--all")
    assert _ok(first) == everything
    assert "4 passed" in first.stdout
    assert _ok(build(workspace, "test", "--all")) == dict.fromkeys(everything, "CACHED")
    (workspace / "packages/pkg-b/src/pkg_b/__init__.py").write_text('"""changed."""\n')
    assert _ok(build(workspace, "test", "--all")) == {
        "pkg-a": "CACHED",
        "pkg-b": "RUN",
        "pkg-c": "RUN",
        "pkg-d": "CACHED",
    }
    assert _ok(build(workspace, "test", "--all", "--no-cache")) == everything


def test_untracked_file_is_an_input_but_ignored_files_are_not(workspace, build):
    _ok(build(workspace, "test", "pkg-d"))
    write(workspace / "packages/pkg-d/src/pkg_d/__pycache__/junk.pyc", "junk")
    assert _ok(build(workspace, "test", "pkg-d")) == {"pkg-d": "CACHED"}
    write(workspace / "packages/pkg-d/src/pkg_d/new.py", "NEW = 1\n")
    assert _ok(build(workspace, "test", "pkg-d")) == {"pkg-d": "RUN"}


def test_global_input_change_reruns_everything(workspace, build):
    _ok(build(workspace, "test", "--all"))
    (workspace / "uv.lock").write_text("version = 1\n# relocked\n")
    assert set(_ok(build(workspace, "test", "--all")).values()) == {"RUN"}


def test_target_selection_includes_dependents(workspace, build):
    assert _ok(build(workspace, "test", "//packages/pkg-b")) == {"pkg-b": "RUN", "pkg-c": "RUN"}
    assert _ok(build(workspace, "test", "a")) == {"pkg-a": "RUN", "pkg-b": "CACHED", "pkg-c": "CACHED"}


def test_failure_is_not_recorded(workspace, build):
    failing = workspace / "packages/pkg-d/tests/test_pkg_d.py"
    failing.write_text("def test_bad():\n    assert False\n")
    first = build(workspace, "test", "pkg-d")
    assert first.returncode == 1
    assert "FAIL" in first.stdout
    assert _status(build(workspace, "test", "pkg-d")) == {"pkg-d": "RUN"}


def test_pytest_args_are_part_of_the_key(workspace, build):
    _ok(build(workspace, "test", "pkg-d"))
    assert _ok(build(workspace, "test", "pkg-d", "--", "-q")) == {"pkg-d": "RUN"}


def test_member_without_tests_passes_with_a_warning(tmp_path, build):
    root = make_workspace(tmp_path, {"bare": []}, with_tests=False)  # no git: fingerprints walk the tree
    first = build(root, "test", "bare")
    assert _ok(first) == {"bare": "RUN"}
    assert "WARNING: //packages/bare has no tests yet" in first.stdout
    assert _ok(build(root, "test", "bare")) == {"bare": "CACHED"}


def test_empty_tests_dir_exit_5_is_success_with_warning(tmp_path, build):
    root = make_workspace(tmp_path, {"empty": []}, with_tests=False)
    write(root / "packages/empty/tests/test_nothing.py", '"""No tests here yet."""\n')
    result = build(root, "test", "empty")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "collected no tests (exit 5)" in result.stdout


def test_unknown_target_is_a_usage_error(workspace, build):
    result = build(workspace, "test", "nope")
    assert result.returncode == 2
    assert "matches no member" in result.stderr


def test_green_targets_are_cached_even_when_another_target_fails(workspace, build):
    (workspace / "packages/pkg-d/tests/test_pkg_d.py").write_text("def test_bad():\n    assert False\n")
    first = build(workspace, "test", "--all")
    assert first.returncode == 1
    assert "green despite the failure (cached): pkg-a, pkg-b, pkg-c" in first.stdout
    assert "red or not attributable: //packages/pkg-d" in first.stdout
    again = _status(build(workspace, "test", "--all"))
    assert again == {"pkg-a": "CACHED", "pkg-b": "CACHED", "pkg-c": "CACHED", "pkg-d": "RUN"}


def test_collection_error_is_attributed_to_its_target(workspace, build):
    (workspace / "packages/pkg-c/tests/test_broken.py").write_text("import not_a_module_anywhere\n")
    first = build(workspace, "test", "--all", "--", "--continue-on-collection-errors")
    assert first.returncode == 1
    plain = build(workspace, "test", "--all")
    assert plain.returncode != 0
    assert "pkg-c" not in "".join(line for line in plain.stdout.splitlines() if "despite" in line)
