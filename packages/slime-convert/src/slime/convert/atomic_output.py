"""Output folders that appear complete or not at all: build in `<name>.tmp-XXXX/` beside it, then rename.

`check_destination` runs before any work (an existing, non-empty destination needs `--force`); `atomic_directory`
yields the temporary folder, removes it if the body raises, and otherwise moves it into place with one rename
(with `force`, an old folder is first renamed aside and deleted only after the new one is in place). A crash
leaves at most a `*.tmp-*` folder, never a partial folder under the final name. Multi-rank writers use
`shared_temporary` (rank 0 creates the folder, every rank learns its path) and `publish` on rank 0. It writes
no content itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from slime.types import ConfigError


def _occupied(path: Path) -> bool:
    return path.exists() and not (path.is_dir() and not any(path.iterdir()))


def check_destination(final: str | Path, *, force: bool, flag: str) -> Path:
    """The destination as a `Path`; `ConfigError` if something is there and `force` is off."""
    path = Path(final)
    if _occupied(path) and not force:
        raise ConfigError(f"{flag} {str(path)!r} already exists and is not empty; pass --force to replace it.")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a file, not a folder; choose another path.")
    return path


def make_temporary(final: Path) -> Path:
    """A fresh `<final>.tmp-XXXX` folder in the destination's parent (created if needed)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent))


def shared_temporary(final: Path) -> Path:
    """`make_temporary` on rank 0, its path sent to every rank (collective when torch.distributed is up)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return make_temporary(final)
    box = [str(make_temporary(final)) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return Path(str(box[0]))


def publish(tmp: Path, final: Path) -> Path:
    """Move the finished `tmp` to `final`, replacing what is there (checked by `check_destination` before)."""
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{final.name}.old-", dir=final.parent))
        os.rename(final, old / final.name)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def discard(tmp: Path) -> None:
    """Remove an unfinished temporary folder."""
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(final: str | Path, *, force: bool, flag: str = "--output-dir") -> Iterator[Path]:
    """Yield a temporary folder; publish it as `final` if the body succeeds, delete it if it raises."""
    path = check_destination(final, force=force, flag=flag)
    tmp = make_temporary(path)
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    publish(tmp, path)
