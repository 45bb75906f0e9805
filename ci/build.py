#!/usr/bin/env python3
"""Bazel-style runner for this uv workspace: ``graph``, ``test``, ``isolate``, ``lint`` and ``all``.

Usage: python ci/build.py [--root DIR] COMMAND [...] [-- PYTEST_ARGS]. ``all`` (lint, then every
member's tests plus ``ci/tests``) is what CI runs. Standard library only; see ci/runner/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import console, graph, isolate, lint, suite  # noqa: E402
from runner.targets import TargetError, ordered, resolve_all  # noqa: E402
from runner.vcs import GitError  # noqa: E402
from runner.workspace import WorkspaceError, load_workspace  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ci/build.py", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=REPO_ROOT, help="workspace root (default: this checkout)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("graph", help="print the package graph")
    test = sub.add_parser("test", help="test targets and everything that depends on them")
    test.add_argument("targets", nargs="*", help="//packages/slime-loss, slime-loss or loss")
    test.add_argument("--all", action="store_true", help="every member, //testing and //ci (default without targets)")
    test.add_argument("--affected", metavar="BASE_REF", help="members changed since BASE_REF...HEAD or uncommitted")
    test.add_argument("--no-cache", action="store_true", help="run even targets whose inputs passed before")
    iso = sub.add_parser("isolate", help="test members each in a fresh venv with only their declared deps")
    iso.add_argument("targets", nargs="*", help="members to isolate (default: all)")
    sub.add_parser("lint", help="ruff check . and lint-imports")
    everything = sub.add_parser("all", help="lint, then test --all and ci/tests (what CI runs)")
    everything.add_argument("--no-cache", action="store_true", help="run every test target")
    return p


def split_pytest_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: runner arguments, then arguments passed on to pytest."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def run_all(workspace, pytest_args: list[str], use_cache: bool) -> int:
    console.header("lint")
    lint_status = lint.lint(workspace.root)
    console.header("test --all (every member, testing/tests and ci/tests)")
    test_status = suite.run_tests(workspace, list(workspace.targets.values()), pytest_args, use_cache)
    verdict = "PASS" if lint_status == test_status == 0 else "FAIL"
    console.say(
        f"all: {verdict} (lint {'ok' if lint_status == 0 else 'failed'}, "
        f"tests {'ok' if test_status == 0 else 'failed'})"
    )
    return 0 if verdict == "PASS" else 1


def dispatch(args: argparse.Namespace, pytest_args: list[str]) -> int:
    workspace = load_workspace(args.root.resolve())
    if args.command == "graph":
        print(graph.render(workspace))
        return 0
    if args.command == "lint":
        return lint.lint(workspace.root)
    if args.command == "test":
        names = suite.select(workspace, args.targets, args.all, args.affected)
        if not names:
            console.say("test: no member selected; nothing to do")
            return 0
        return suite.run_tests(workspace, [workspace.targets[n] for n in names], pytest_args, not args.no_cache)
    if args.command == "isolate":
        names = ordered(workspace, resolve_all(workspace, args.targets)) if args.targets else list(workspace.members)
        names = [n for n in names if n in workspace.members]  # pseudo-targets have no environment of their own
        return isolate.isolate(workspace, names, pytest_args)
    return run_all(workspace, pytest_args, not args.no_cache)


def main(argv: list[str] | None = None) -> int:
    own, pytest_args = split_pytest_args(list(sys.argv[1:] if argv is None else argv))
    args = parser().parse_args(own)
    try:
        return dispatch(args, pytest_args)
    except (WorkspaceError, TargetError, GitError, FileNotFoundError) as exc:
        console.fail(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
