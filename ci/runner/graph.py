"""The ``graph`` step: render the package graph as text (dependencies and direct dependents).

Members are listed in dependency order, so every member appears after what it needs. This module
only formats; reading the workspace is :mod:`runner.workspace`'s job.
"""

from __future__ import annotations

from .workspace import Workspace, topological_order


def render(workspace: Workspace) -> str:
    """One line per member: label, name, what it depends on and what depends on it."""
    order = topological_order(workspace)
    width = max((len(workspace.members[n].label) for n in order), default=0)
    lines = [f"{len(order)} member(s), in dependency order:"]
    for name in order:
        member = workspace.members[name]
        deps = ", ".join(member.deps) or "-"
        users = ", ".join(sorted(workspace.dependents_of(name))) or "-"
        lines.append(f"  {member.label:<{width}}  {name}")
        lines.append(f"  {'':<{width}}    deps: {deps}")
        lines.append(f"  {'':<{width}}    used by: {users}")
    if workspace.extras:
        labels = ", ".join(t.label for t in workspace.extras.values())
        lines.append(f"pseudo-targets (repo-level tests, no dependencies): {labels}")
    return "\n".join(lines)
