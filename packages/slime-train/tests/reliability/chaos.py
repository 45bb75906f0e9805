"""Test support of the whole-system fault tests: the fault-injecting plugin module and a loopback reward server.

`PLUGIN` is written to a temporary folder and imported by the job under a name the test picks (`--no-ray`, so
the job and the test share that module's state): its generate function wraps the default one and, keyed on sample
indices (rollout = index // per-rollout samples), SIGKILLs an engine or the router while requests run on it and
queues faults for the reward server. `RewardServer` scores like the demo task (`slime.train.demo.task.score`) and
takes those faults: a request that hangs past the client's timeout, or an answer that is not JSON.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web

PLUGIN = '''
"""Fault injection for the reliability suite (written by tests/reliability/chaos.py)."""
import asyncio
import os
import signal
import time

import psutil

from slime.sglang.blocking_http import request_json
from slime.sglang.rollout import generate as default_generate

PER_ROLLOUT = 8
SCHEDULE = {}        # rollout -> fault: hang_reward, kill_engine, kill_router, garbage_reward, kill_only_engine
EVENTS = []          # (fault, detail) in the order they happened
FIRED = set()
REWARD_FAULTS = []   # modes the reward server applies to its next requests
ROUTERS = {}         # rollout -> (router URL, its worker URLs) when the rollout's first sample started
LISTENING = []       # (pid, ip, port) of every listening socket of this process's children, seen in rollout 0


def _router(args):
    return f"http://{args.sglang_router_ip}:{args.sglang_router_port}"


def _workers(args):
    return sorted(w["url"] for w in request_json("GET", _router(args) + "/workers")[1]["workers"])


def _listener_pid(url):
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise RuntimeError(f"nothing listens on {url}")


def _running(url):
    load = request_json("GET", url + "/get_load")[1][0]
    return load["num_reqs"] - load["num_waiting_reqs"]


def _kill_when_busy(watch, target, fault):
    """SIGKILL the process group serving `target` once the engines `watch` have a request running between them.

    The router may send every request of a rollout to one engine, so a router kill watches all of them."""
    deadline, running = time.monotonic() + 120, 0
    while time.monotonic() < deadline and not running:
        running = sum(_running(url) for url in watch)
        time.sleep(0.005)
    os.killpg(os.getpgid(_listener_pid(target)), signal.SIGKILL)
    EVENTS.append((fault, {"url": target, "running_at_kill": running}))


def _listening():
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [(proc.pid, c.laddr.ip, c.laddr.port, proc.name()) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


async def _inject(args, rollout):
    """Apply this rollout's fault once. A kill runs inside the first sample's generate, before its own request,
    and waits until the other samples' requests run on the engine: so it always lands mid-rollout."""
    fault = SCHEDULE.get(rollout)
    if fault is None or fault in FIRED:
        return
    FIRED.add(fault)
    workers = ROUTERS[rollout][1]
    if fault in ("hang_reward", "garbage_reward"):
        REWARD_FAULTS.append(fault.split("_")[0])
        EVENTS.append((fault, {}))
    elif fault in ("kill_engine", "kill_only_engine"):
        await asyncio.to_thread(_kill_when_busy, [workers[-1]], workers[-1], fault)
    elif fault == "kill_router":
        await asyncio.to_thread(_kill_when_busy, workers, _router(args), fault)


async def generate(args, sample, sampling_params):
    rollout = sample.index // PER_ROLLOUT
    if rollout not in ROUTERS:
        ROUTERS[rollout] = (_router(args), [])  # claimed before awaiting: the group's other samples skip this
        ROUTERS[rollout][1].extend(await asyncio.to_thread(_workers, args))
        if rollout == 0:
            LISTENING.extend(await asyncio.to_thread(_listening))
    while not ROUTERS[rollout][1]:
        await asyncio.sleep(0.01)
    params = dict(sampling_params)
    if SCHEDULE.get(rollout, "").startswith("kill"):
        params.update(ignore_eos=True, max_new_tokens=96)  # long enough to be caught mid-generation
    await _inject(args, rollout)
    return await default_generate(args, sample, params)
'''


@contextmanager
def chaos_module(folder: Path, name: str, schedule: dict[int, str], per_rollout: int) -> Iterator[ModuleType]:
    """Import the plugin as module `name` from `folder` with a fault `schedule`; unload it afterwards.

    Give each job its own `name`: the rollout caches resolved plugin paths for the life of the process.
    """
    (folder / f"{name}.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(name)
        module.SCHEDULE.update(schedule)
        module.PER_ROLLOUT = per_rollout
        yield module
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


class RewardServer:
    """The demo task's reward behind HTTP on 127.0.0.1, in a thread; `faults` is the plugin's REWARD_FAULTS."""

    def __init__(self, faults: list[str]) -> None:
        self.faults = faults
        self.log: list[tuple[str, str]] = []  # (mode, response) per request
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._release: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="reward-server", daemon=True)

    def __enter__(self) -> RewardServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the reward server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        if not self._thread.is_alive():
            self._loop.close()

    async def _reward(self, request: web.Request) -> web.Response:
        from slime.train.demo.task import score

        body: dict[str, Any] = await request.json()
        mode = self.faults.pop(0) if self.faults else "ok"
        self.log.append((mode, body["response"]))
        if mode == "hang":
            assert self._release is not None
            await asyncio.wait_for(self._release.wait(), 120)  # past the client's --rm-timeout-s
        if mode == "garbage":
            return web.Response(text="<html>upstream hiccup</html>", content_type="text/html")
        return web.json_response(score(body["response"], body["label"]))

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop, self._release = asyncio.Event(), asyncio.Event()
        app = web.Application()
        app.router.add_post("/reward", self._reward)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/reward"  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        self._release.set()
        await runner.cleanup()
