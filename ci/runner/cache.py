"""The green-run cache under ``.ci-cache/``: which input hashes of which targets passed their tests.

Each green hash is an empty marker file ``.ci-cache/green/<target>/<sha256>``, so several hashes per
target may be green at once (switching branches back and forth stays cached) and writes are atomic.
This module does not compute hashes and does not decide what to run.
"""

from __future__ import annotations

from pathlib import Path

CACHE_DIR = ".ci-cache"


def _marker(root: Path, target: str, digest: str) -> Path:
    return Path(root) / CACHE_DIR / "green" / target / digest


def is_green(root: Path, target: str, digest: str) -> bool:
    """Whether ``target`` already passed with exactly these inputs."""
    return _marker(root, target, digest).is_file()


def record_green(root: Path, target: str, digest: str) -> None:
    """Remember that ``target`` passed with these inputs."""
    marker = _marker(root, target, digest)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
