"""`RunProgress`: rich progress bars for a job: the running rollout (samples back, groups kept) and the run
(rollouts trained, the phase the loop is in).

The loops tell it the phase; while a rollout runs, `wait` polls the rollout host's `progress()` counters
(`slime.sglang.rollout.progress`) through `Handle.peek`, which answers beside the busy rollout call. With
`--progress auto` bars are drawn only when stdout is a terminal; metrics lines printed meanwhile appear above
the bars. Disabled, every method is a no-op and `wait` just waits. It never changes what the loop does.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

POLL_S = 0.25


class _Waitable(Protocol):
    def done(self) -> bool: ...

    def result(self) -> Any: ...


class _Peekable(Protocol):
    def peek(self, method: str) -> Any: ...


class RunProgress:
    """Two bars: `rollout` (kept groups of the running rollout) and `run` (rollouts trained)."""

    def __init__(
        self, mode: Literal["auto", "always", "never"], *, first: int, total: int, console: Console | None = None
    ) -> None:
        self._progress: Progress | None = None
        if mode == "never" or (mode == "auto" and console is None and not sys.stdout.isatty()):
            return  # rich is imported only when bars are drawn (minimal installs run without it)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = console or Console(file=sys.stdout)
        if mode == "auto" and not console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._run = self._progress.add_task("run", total=total, completed=first, detail="starting")
        self._rollout = self._progress.add_task("rollout", total=None, detail="", visible=False)

    @property
    def enabled(self) -> bool:
        """Whether bars are drawn."""
        return self._progress is not None

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def phase(self, rollout_id: int, what: str) -> None:
        """The loop entered `what` ("generating", "training", "saving", "syncing weights", "evaluating")."""
        if self._progress is not None:
            self._progress.update(self._run, detail=f"rollout {rollout_id}: {what}")

    def trained(self, rollout_id: int) -> None:
        """Rollout `rollout_id` is trained (and saved / synced as due)."""
        if self._progress is not None:
            self._progress.update(self._run, completed=rollout_id + 1, detail=f"rollout {rollout_id}: done")

    def show_rollout(self, counters: dict[str, int]) -> None:
        """Draw the rollout bar from `RolloutProgress.snapshot()` counters."""
        if self._progress is None or counters.get("rollout_id", -1) < 0:
            return
        self._progress.update(
            self._rollout,
            description=f"rollout {counters['rollout_id']}",
            total=counters["target_groups"] or None,
            completed=counters["kept_groups"],
            detail=f"{counters['finished_samples']} samples back",
            visible=True,
        )

    def wait(self, pending: _Waitable, host: _Peekable) -> Any:
        """Wait for the rollout call `pending`, refreshing the rollout bar from `host.progress()`."""
        if self._progress is None:
            return pending.result()
        while not pending.done():
            self.show_rollout(host.peek("progress"))
            time.sleep(POLL_S)
        result = pending.result()
        self.show_rollout(host.peek("progress"))
        return result
