"""The ``test`` step: select targets, skip those cached green, run pytest once, record the green ones.

Selection is explicit labels, ``--all`` (every member plus the ``//testing`` and ``//ci``
pseudo-targets) or ``--affected BASE`` (or a mix), always widened to every dependent member.
The cache is keyed by :mod:`runner.fingerprint` hashes and stored by :mod:`runner.cache`; after a
red plain run, targets whose own tests all passed (per the JUnit report) are still recorded.
This module does not parse the command line and does not lint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import affected, cache, console, junit, pytest_exec, vcs
from .fingerprint import Fingerprinter
from .targets import ordered, resolve_all, with_dependents
from .workspace import Member, Workspace


def select(workspace: Workspace, labels: Sequence[str], all_members: bool, base: str | None) -> list[str]:
    """Member names to test, in workspace order: the chosen ones plus all their dependents."""
    chosen = resolve_all(workspace, labels)
    if all_members or (not labels and base is None):
        chosen |= set(workspace.targets)
    if base is not None:
        changed = vcs.changed_files(workspace.root, base)
        touched = affected.members_for_paths(workspace, changed)
        console.say(f"--affected {base}: {len(changed)} changed file(s) touch {sorted(touched) or 'no member'}")
        chosen |= touched
    return ordered(workspace, with_dependents(workspace, chosen))


def _partition(workspace: Workspace, targets: Sequence[Member], hashes: dict[str, str], use_cache: bool):
    to_run: list[Member] = []
    for target in targets:
        digest = hashes[target.name]
        if use_cache and cache.is_green(workspace.root, target.name, digest):
            console.say(f"  CACHED  {target.label}  (inputs {digest[:12]} already passed; skipped)")
        else:
            to_run.append(target)
            console.say(f"  RUN     {target.label}  (inputs {digest[:12]})")
    return to_run


def _with_tests(workspace: Workspace, to_run: Sequence[Member]) -> list[Member]:
    """The targets that have test files now (decided once, before pytest starts); warn about the rest."""
    with_tests = [t for t in to_run if pytest_exec.has_test_files(workspace.root, t.tests_path)]
    for target in to_run:
        if target not in with_tests:
            console.warn(f"{target.label} has no tests yet (no test files in {target.tests_path}/); counted as success")
    return with_tests


def _pytest(
    workspace: Workspace, with_tests: Sequence[Member], pytest_args: Sequence[str], scratch: Path, partial: bool
) -> int:
    if not with_tests:
        return pytest_exec.EXIT_OK
    paths = [t.tests_path for t in with_tests]
    cmd = pytest_exec.command(paths, pytest_args, xdist=pytest_exec.xdist_available(), scratch=scratch)
    if partial:
        cmd.append(f"{junit.REPORT_FLAG}={scratch / junit.REPORT_NAME}")
    return pytest_exec.run(workspace.root, cmd)


def _record(workspace: Workspace, targets: Sequence[Member], hashes: dict[str, str]) -> None:
    for target in targets:
        cache.record_green(workspace.root, target.name, hashes[target.name])


def _record_partial(
    workspace: Workspace, to_run: Sequence[Member], with_tests: Sequence[Member], hashes: dict[str, str], report: Path
) -> None:
    """After a red run, still cache the targets whose own tests all passed (and those with no tests)."""
    green = junit.green_targets(report, with_tests)
    _record(workspace, [t for t in to_run if t not in with_tests or t.name in green], hashes)
    red = [t.label for t in with_tests if t.name not in green]
    console.say(f"test: green despite the failure (cached): {', '.join(sorted(green)) or 'none'}")
    console.say(f"test: red or not attributable: {', '.join(red) or 'none'}")


def run_tests(
    workspace: Workspace, targets: Sequence[Member], pytest_args: Sequence[str] = (), use_cache: bool = True
) -> int:
    """Test ``targets`` (honouring the cache unless ``use_cache`` is false); return an exit status."""
    console.say(f"test: {len(targets)} target(s) selected" + ("" if use_cache else " (--no-cache)"))
    fingerprinter = Fingerprinter(workspace, pytest_args)
    hashes = {t.name: fingerprinter.hash(t) for t in targets}
    to_run = _partition(workspace, targets, hashes, use_cache)
    if not to_run:
        console.say(f"test: PASS, all {len(targets)} target(s) cached, nothing ran")
        return 0
    # Partial credit only for plain runs: with -k, -x, --lf ... a target's cases may be incomplete.
    partial = not pytest_args
    with tempfile.TemporaryDirectory(prefix="ci-pytest-") as tmp:
        with_tests = _with_tests(workspace, to_run)
        returncode = _pytest(workspace, with_tests, pytest_args, Path(tmp), partial)
        if returncode == pytest_exec.EXIT_TESTS_FAILED and partial:
            _record_partial(workspace, to_run, with_tests, hashes, Path(tmp) / junit.REPORT_NAME)
    if not pytest_exec.passed(returncode, "test"):
        console.say(f"test: FAIL (pytest exit {returncode}); ran {', '.join(t.label for t in to_run)}")
        return returncode or 1
    _record(workspace, to_run, hashes)
    skipped = len(targets) - len(to_run)
    console.say(f"test: PASS, ran {len(to_run)} target(s), {skipped} skipped as cached")
    return 0
