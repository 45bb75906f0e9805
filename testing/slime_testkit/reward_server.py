"""`with_reward_server`: a one-route aiohttp server on 127.0.0.1 for reward-client tests.

It serves `handler` at POST /reward on a free port, awaits `body(url)` and always tears the server down. It holds
no reward logic: each test's handler decides what the server answers (scores, hangs, garbage, errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def with_reward_server(handler: Handler, body: Callable[[str], Awaitable[Any]]) -> Any:
    """Run `body` with the URL of a server answering POST /reward with `handler`; returns what `body` returns."""
    app = web.Application()
    app.router.add_post("/reward", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        return await body(f"http://127.0.0.1:{port}/reward")
    finally:
        await runner.cleanup()
