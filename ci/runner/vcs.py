"""Git queries the runner needs: which files exist for the build, and which changed since a ref.

Paths are returned posix and relative to the workspace root. Outside a git checkout, file listing
falls back to walking the tree (skipping dot-directories, ``__pycache__`` and ``*.pyc``); change
detection requires git. This module does not interpret paths as members.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class GitError(Exception):
    """A git command failed."""


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def is_git_checkout(root: Path) -> bool:
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").strip() == "true"
    except (GitError, OSError):
        return False


def _split_nul(out: str) -> list[str]:
    return [p for p in out.split("\0") if p]


def _walk_files(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / f).as_posix() for f in filenames if not f.endswith(".pyc"))
    return sorted(found)


def build_files(root: Path) -> list[str]:
    """Git-tracked plus untracked-not-ignored files (tracked files deleted in the tree included)."""
    if not is_git_checkout(root):
        return _walk_files(root)
    return sorted(set(_split_nul(_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"))))


def changed_files(root: Path, base: str) -> list[str]:
    """Files changed in ``base...HEAD``, plus staged, unstaged and untracked-not-ignored changes."""
    committed = _git(root, "diff", "-z", "--name-only", "--no-renames", "--relative", f"{base}...HEAD")
    uncommitted = _git(root, "diff", "-z", "--name-only", "--no-renames", "--relative", "HEAD")
    untracked = _git(root, "ls-files", "-z", "--others", "--exclude-standard")
    return sorted(set(_split_nul(committed) + _split_nul(uncommitted) + _split_nul(untracked)))
