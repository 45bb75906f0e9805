"""Target selection on the package graph: parse target labels and walk dependency closures.

A label may be ``//packages/slime-loss``, ``slime-loss`` or the short ``loss`` (or ``//ci`` and
``//testing`` for the repo-level pseudo-targets). Testing a target means
testing it and every member that (transitively) depends on it. This module does not read files or git.
"""

from __future__ import annotations

from collections.abc import Iterable

from .workspace import Workspace, normalize


class TargetError(Exception):
    """A target label names no member, or more than one."""


def resolve(workspace: Workspace, label: str) -> str:
    """The member name that a command-line label refers to."""
    members = workspace.targets.values()
    if label.startswith("//"):
        path = label[2:].rstrip("/")
        matches = [m.name for m in members if m.path == path]
    else:
        wanted = normalize(label)
        matches = [m.name for m in members if m.name == wanted]
        if not matches:
            matches = [m.name for m in members if m.name.endswith("-" + wanted) or m.path.split("/")[-1] == label]
    if len(matches) != 1:
        known = ", ".join(sorted(m.name for m in members))
        what = "is ambiguous" if matches else "matches no member"
        raise TargetError(f"target {label!r} {what} (members: {known})")
    return matches[0]


def resolve_all(workspace: Workspace, labels: Iterable[str]) -> set[str]:
    return {resolve(workspace, label) for label in labels}


def with_dependents(workspace: Workspace, names: Iterable[str]) -> set[str]:
    """``names`` plus every member that depends on any of them, directly or transitively."""
    selected: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in selected:
            selected.add(name)
            stack.extend(workspace.dependents_of(name))
    return selected


def dependencies_of(workspace: Workspace, name: str) -> set[str]:
    """Every member that ``name`` depends on, directly or transitively (excluding ``name``)."""
    found: set[str] = set()
    stack = list(workspace.members[name].deps)
    while stack:
        dep = stack.pop()
        if dep not in found:
            found.add(dep)
            stack.extend(workspace.members[dep].deps)
    return found


def ordered(workspace: Workspace, names: Iterable[str]) -> list[str]:
    """``names`` in the workspace's stable member order."""
    wanted = set(names)
    return [name for name in workspace.targets if name in wanted]
