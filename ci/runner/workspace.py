"""The uv workspace as a package graph: members, their names and their in-workspace dependencies.

It reads the root ``pyproject.toml`` (``[tool.uv.workspace] members`` / ``exclude`` globs) and each
member's ``[project] name`` and ``dependencies``. It also names the root-level files that are inputs
of every member. It does not resolve command-line targets, walk closures or touch git.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# Root-level inputs shared by every member: a change to any of them affects everything.
GLOBAL_FILES = ("uv.lock", "pyproject.toml", "conftest.py")
GLOBAL_DIRS = ("testing",)
# Repo-level test directories that belong to no member; each becomes a dependency-free pseudo-target.
EXTRA_TARGET_DIRS = ("testing", "ci")

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class WorkspaceError(Exception):
    """The workspace definition is unreadable or inconsistent."""


@dataclass(frozen=True)
class Member:
    """One test target: a workspace member, or a repo-level pseudo-target such as ``//ci``."""

    name: str
    path: str  # posix path relative to the workspace root, e.g. "packages/slime-loss"
    deps: tuple[str, ...] = ()  # names of other members it depends on

    @property
    def label(self) -> str:
        """The Bazel-style label, e.g. ``//packages/slime-loss``."""
        return f"//{self.path}"

    @property
    def tests_path(self) -> str:
        return f"{self.path}/tests"


@dataclass
class Workspace:
    """All members of one workspace, keyed by normalized name, in a stable (sorted-path) order.

    ``extras`` are the repo-level pseudo-targets (``//testing``, ``//ci``): test directories that
    belong to no member, depend on nothing and are never depended on.
    """

    root: Path
    members: dict[str, Member] = field(default_factory=dict)
    extras: dict[str, Member] = field(default_factory=dict)

    @property
    def targets(self) -> dict[str, Member]:
        """Members, then pseudo-targets."""
        return {**self.members, **self.extras}

    def dependents_of(self, name: str) -> list[str]:
        """Members that directly depend on ``name``."""
        return [m.name for m in self.members.values() if name in m.deps]


def normalize(name: str) -> str:
    """PEP 503 name normalization (``Slime_Types`` -> ``slime-types``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    """The normalized distribution name of a PEP 508 requirement string."""
    match = _REQ_NAME.match(requirement)
    return normalize(match.group(1)) if match else None


def is_global_input(path: str) -> bool:
    """Whether a root-relative posix path is an input of every member."""
    return path in GLOBAL_FILES or any(path.startswith(d + "/") for d in GLOBAL_DIRS)


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WorkspaceError(f"cannot read {path}: {exc}") from exc


def _member_dirs(root: Path, config: dict) -> list[Path]:
    ws = config.get("tool", {}).get("uv", {}).get("workspace")
    if ws is None:
        raise WorkspaceError(f"{root / 'pyproject.toml'} has no [tool.uv.workspace] table")
    excluded = {p.resolve() for pattern in ws.get("exclude", []) for p in root.glob(pattern)}
    found = {
        p.resolve(): p
        for pattern in ws.get("members", [])
        for p in root.glob(pattern)
        if (p / "pyproject.toml").is_file()
    }
    return sorted((p for key, p in found.items() if key not in excluded), key=lambda p: p.as_posix())


def load_workspace(root: Path) -> Workspace:
    """Read the workspace rooted at ``root`` and return its member graph."""
    root = Path(root)
    config = _read_toml(root / "pyproject.toml")
    raw: list[tuple[str, str, list[str]]] = []
    for member_dir in _member_dirs(root, config):
        project = _read_toml(member_dir / "pyproject.toml").get("project", {})
        if "name" not in project:
            raise WorkspaceError(f"{member_dir / 'pyproject.toml'} has no [project] name")
        rel = member_dir.relative_to(root).as_posix()
        raw.append((normalize(project["name"]), rel, project.get("dependencies", [])))
    names = {name for name, _, _ in raw}
    if len(names) != len(raw):
        raise WorkspaceError("two workspace members share one project name")
    workspace = Workspace(root=root)
    for name, rel, requirements in raw:
        deps = sorted({n for n in map(requirement_name, requirements) if n in names and n != name})
        workspace.members[name] = Member(name=name, path=rel, deps=tuple(deps))
    topological_order(workspace)  # raises on a cycle
    for rel in EXTRA_TARGET_DIRS:
        if (root / rel / "tests").is_dir() and rel not in workspace.members:
            workspace.extras[rel] = Member(name=rel, path=rel)
    return workspace


def topological_order(workspace: Workspace) -> list[str]:
    """Member names, every member after all of its dependencies (ties broken by path order)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise WorkspaceError("dependency cycle: " + " -> ".join((*trail, name)))
        state[name] = "active"
        for dep in workspace.members[name].deps:
            visit(dep, (*trail, name))
        state[name] = "done"
        order.append(name)

    for name in workspace.members:
        visit(name, ())
    return order
