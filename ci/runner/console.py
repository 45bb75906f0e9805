"""How the runner talks to the user: prefixed, flushed status lines on stdout.

It does not decide anything and does not run processes; it only formats what other modules report.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

PREFIX = "[ci]"


def say(message: str = "") -> None:
    """Print one status line, flushed so it interleaves correctly with child processes."""
    print(f"{PREFIX} {message}".rstrip(), flush=True)


def warn(message: str) -> None:
    """Print one warning line (on stdout, next to the status lines it belongs to)."""
    say(f"WARNING: {message}")


def header(title: str) -> None:
    """Print a section header for one step (lint, test, isolate ...)."""
    say("")
    say(f"==== {title} ====")


def show_command(cmd: Sequence[str], env_note: str = "") -> None:
    """Echo a command line before it runs, so logs can be replayed by hand."""
    line = shlex.join(str(part) for part in cmd)
    say(f"$ {env_note + ' ' if env_note else ''}{line}")


def fail(message: str) -> None:
    """Print an error line on stderr."""
    print(f"{PREFIX} ERROR: {message}", file=sys.stderr, flush=True)
