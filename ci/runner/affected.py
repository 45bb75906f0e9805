"""Affected-target selection: map changed file paths to the members they belong to.

A file under a member's directory belongs to that member; a change to a global input (``uv.lock``,
the root ``pyproject.toml``, root ``conftest.py``, ``testing/``) affects every target; any other
file (docs) affects none. The pseudo-targets ``//ci`` and ``//testing`` own their directories too.
Adding dependents is left to :mod:`runner.targets`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .workspace import Workspace, is_global_input


def owner(workspace: Workspace, path: str) -> str | None:
    """The member whose directory contains ``path`` (the deepest one if members nest)."""
    best: tuple[int, str] | None = None
    for member in workspace.targets.values():
        if path.startswith(member.path + "/") and (best is None or len(member.path) > best[0]):
            best = (len(member.path), member.name)
    return best[1] if best else None


def members_for_paths(workspace: Workspace, paths: Iterable[str]) -> set[str]:
    """The members directly touched by a set of changed paths (before adding dependents)."""
    touched: set[str] = set()
    for path in paths:
        if is_global_input(path):
            return set(workspace.targets)
        name = owner(workspace, path)
        if name is not None:
            touched.add(name)
    return touched
