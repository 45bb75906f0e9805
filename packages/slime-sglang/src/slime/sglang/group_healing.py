"""Heal an `EngineGroup` after a crash: restart a dead router on its old address, replace dead engines.

`heal_group(group)` first checks the router: a launched router that no longer answers `/health` is stopped and
started again on the same port (so every client's URL stays valid) and the live engines are registered with it
again; an external router that is down is an `EngineError` (it is not ours to restart). Then engines that exited,
fail `/health` or are marked unhealthy are deregistered and stopped, and new engines are launched until the group
has `config.num_engines` again. A replacement serves the checkpoint it was launched with: the caller must push
the current weights to the URLs in `HealReport.added` before it generates for training. Not thread-safe (callers
serialise it with anything else that changes the group); it decides nothing about when to heal.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

from slime.sglang.blocking_http import is_ok
from slime.sglang.engine_group import EngineGroup
from slime.sglang.router import Router
from slime.types import EngineError

ROUTER_PROBES = 3
"""`/health` probes (each with a 5 s timeout) before a launched router counts as dead."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HealReport:
    """What one `heal_group` call did."""

    router_restarted: bool = False
    """The router was restarted (clients must drop pooled connections to it)."""
    removed: tuple[str, ...] = ()
    """URLs of the engines taken out."""
    added: tuple[str, ...] = ()
    """URLs of the engines launched to replace them (they still hold the checkpoint's weights)."""

    @property
    def changed(self) -> bool:
        return self.router_restarted or bool(self.removed) or bool(self.added)


def router_alive(group: EngineGroup) -> bool:
    """True when the group's router answers `/health` (a few probes, so one slow answer is not a death)."""
    return any(is_ok(group.router_url + "/health") for _ in range(ROUTER_PROBES))


def restart_router(group: EngineGroup) -> str:
    """Stop the group's launched router and start a new one on the same port; register the live engines.

    Raises:
        EngineError: the router is external, or the new one did not start.
    """
    old = group.router
    if old.config.external:
        raise EngineError(
            f"the external router {old.url} does not answer /health; restart it (slime only restarts routers it "
            "launched), or drop --sglang-router-ip/--sglang-router-port to let slime launch one."
        )
    port = urlparse(old.url).port
    old.stop()
    group.router = Router(dataclasses.replace(old.config, port=port))
    group.router.start()
    for engine in group.engines:
        if engine.is_alive() and is_ok(engine.url + "/health"):
            group.router.add_worker(engine.url)
    return group.router.url


def heal_group(group: EngineGroup) -> HealReport:
    """Restart a dead router, drop dead engines, launch replacements up to `num_engines`; report what changed."""
    restarted = False
    if not router_alive(group):
        restart_router(group)
        restarted = True
    removed = tuple(group.remove_dead_engines())
    missing = max(0, group.config.num_engines - len(group.engines))
    added = tuple(group.add_engine() for _ in range(missing))
    return HealReport(router_restarted=restarted, removed=removed, added=added)
