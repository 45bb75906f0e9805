"""`ManagedProcess`: one server subprocess (engine or router) under the supervisor, with its log file.

The command runs under `slime.sglang.supervisor` in a new process group, so `stop` / `kill` reach everything
the server spawned, and the group dies with this process even when it is SIGKILLed. Output goes to a log file
(never a pipe, which a chatty server could fill and block on); `log_tail` feeds error messages. The echoed command
and log tails have secret flag values (`--api-key ...`) redacted (`slime.sglang.redaction`). Processes still
running at interpreter exit are stopped. This module knows nothing about SGLang.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from slime.sglang.blocking_http import is_ok
from slime.sglang.redaction import redact_argv, redact_text, secret_values
from slime.types import EngineError

_live: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()
_live_lock = threading.Lock()


class ManagedProcess:
    """Start `command` (argv list) with output to `log_path` (a fresh temp file when None)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        log_path: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        grace_s: float = 10.0,
    ) -> None:
        self.command = list(command)
        self._secrets = secret_values(self.command)
        self.name = name
        self.grace_s = grace_s
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"slime-{name}-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self._env = {**os.environ, **(env or {})}
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the supervisor and the server; returns at once."""
        if self._popen is not None:
            raise EngineError(f"{self.name} was already started")
        supervised = [sys.executable, "-m", "slime.sglang.supervisor", "--parent-pid", str(os.getpid()),
                      "--grace-s", str(self.grace_s), "--", *self.command]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {self.shown_command}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                supervised,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # own process group: stop() reaches every descendant
            )
        with _live_lock:
            _live.add(self)

    @property
    def shown_command(self) -> str:
        """The command line as logged and quoted in errors: secret flag values replaced by `***`."""
        return " ".join(redact_argv(self.command))

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def returncode(self) -> int | None:
        """The exit code once the server has exited (None while it runs or before start)."""
        return None if self._popen is None else self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self) -> None:
        """SIGTERM (the supervisor stops the group gracefully), then SIGKILL the group; safe to call twice."""
        if self._popen is None or self._popen.poll() is not None:
            self._kill_group()
            return
        self._popen.send_signal(signal.SIGTERM)
        try:
            self._popen.wait(timeout=self.grace_s + 10)
        except subprocess.TimeoutExpired:
            pass
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the whole group at once (simulates a crash)."""
        self._kill_group()
        if self._popen is not None:
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def _kill_group(self) -> None:
        if self._popen is None:
            return
        try:
            os.killpg(self._popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log, for error messages."""
        try:
            text = self.log_path.read_bytes()[-64_000:].decode(errors="replace")
        except OSError:
            return "(no log)"
        return redact_text("\n".join(text.splitlines()[-lines:]), self._secrets)

    def wait_http_ok(self, url: str, paths: Sequence[str], *, timeout_s: float, poll_s: float = 0.25) -> None:
        """Wait until GET `url+path` answers 200 for every path in turn.

        Raises:
            EngineError: the process exited, or `timeout_s` passed; the message carries the log tail.
        """
        deadline = time.monotonic() + timeout_s
        for path in paths:
            while not is_ok(url + path):
                code = self.returncode()
                if code is not None:
                    raise EngineError(
                        f"{self.name} exited with code {code} before {url}{path} answered 200.\n"
                        f"command: {self.shown_command}\nlog {self.log_path} (last lines):\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"{self.name} did not answer {url}{path} with 200 within {timeout_s:.0f} s.\n"
                        f"command: {self.shown_command}\nlog {self.log_path} (last lines):\n{self.log_tail()}"
                    )
                time.sleep(poll_s)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        processes = list(_live)
    for process in processes:
        process.stop()
