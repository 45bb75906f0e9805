"""A watchdog that runs one server command and guarantees it dies with its parent.

`python -m slime.sglang.supervisor --parent-pid P --grace-s G -- CMD...` is started by `ManagedProcess` as the
leader of a new process group; CMD (and everything CMD spawns) inherits the group. The supervisor exits with
CMD's exit code, and kills the whole group when (a) its parent process disappears (even by SIGKILL: it polls
`getppid()`), (b) it receives SIGTERM/SIGINT (a clean stop: SIGTERM to the group, SIGKILL after G seconds), or
(c) CMD exits (leftover grandchildren are killed). Polling, not PR_SET_PDEATHSIG, because the death signal
fires when the *thread* that spawned the child exits, which would kill engines launched from a thread pool.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import psutil

POLL_S = 0.2


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _kill_group(pgid: int, child: subprocess.Popen[bytes], grace_s: float) -> None:
    for proc in _group_members(pgid):
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_members(pgid):
        child.poll()  # reap our direct child so it does not linger as a zombie group member
        time.sleep(POLL_S)
    for proc in _group_members(pgid):
        _signal(proc, signal.SIGKILL)
    child.poll()


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def run(parent_pid: int, grace_s: float, command: Sequence[str]) -> int:
    stop = {"requested": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pgid = os.getpgid(0)
    child = subprocess.Popen(list(command), stdin=subprocess.DEVNULL)
    while True:
        code = child.poll()
        if code is not None:
            print(f"[slime supervisor] server exited with code {code}", flush=True)
            _kill_group(pgid, child, 0.0)
            return code if code >= 0 else 128 - code
        if stop["requested"] or os.getppid() != parent_pid:
            reason = "stop requested" if stop["requested"] else f"parent {parent_pid} died"
            print(f"[slime supervisor] {reason}: stopping the server", flush=True)
            _kill_group(pgid, child, grace_s)
            code = child.wait(timeout=10)
            return code if code >= 0 else 128 - code
        time.sleep(POLL_S)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slime.sglang.supervisor")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--grace-s", type=float, default=10.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no command given after --")
    sys.exit(run(ns.parent_pid, ns.grace_s, command))


if __name__ == "__main__":
    main()
