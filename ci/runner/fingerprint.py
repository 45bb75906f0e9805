"""Content fingerprints of test targets: the sha256 over everything a target's tests can see.

A target's inputs are the build files (git-tracked plus untracked-not-ignored) under its own
directory and under the directories of all its transitive dependencies, plus the global inputs
(``uv.lock``, root ``pyproject.toml``, root ``conftest.py``, ``testing/``), plus the Python version
and the extra pytest arguments. This module computes hashes; it does not store or compare them.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from . import vcs
from .targets import dependencies_of
from .workspace import Member, Workspace, is_global_input

_MISSING = "missing"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return _MISSING  # a tracked file deleted in the working tree, or a submodule
    return digest.hexdigest()


class Fingerprinter:
    """Hashes targets of one workspace, reading each file at most once."""

    def __init__(self, workspace: Workspace, extra: Sequence[str] = ()) -> None:
        self.workspace = workspace
        self.extra = tuple(extra)
        self._files = vcs.build_files(workspace.root)
        self._digests: dict[str, str] = {}

    def _digest(self, rel: str) -> str:
        if rel not in self._digests:
            self._digests[rel] = _file_digest(self.workspace.root / rel)
        return self._digests[rel]

    def input_files(self, target: Member) -> list[str]:
        """The sorted root-relative input files of ``target``."""
        dirs = [target.path]
        if target.name in self.workspace.members:
            dirs += [self.workspace.members[d].path for d in dependencies_of(self.workspace, target.name)]
        prefixes = tuple(d + "/" for d in dirs)
        return [p for p in self._files if p.startswith(prefixes) or is_global_input(p)]

    def hash(self, target: Member) -> str:
        """The hex sha256 of ``target``'s inputs."""
        digest = hashlib.sha256()
        digest.update(f"python {sys.version}\nextra {self.extra!r}\n".encode())
        for rel in self.input_files(target):
            digest.update(f"{rel}\0{self._digest(rel)}\n".encode())
        return digest.hexdigest()
