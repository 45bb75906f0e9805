"""Stopping a rollout: abort what the engines are still generating, without waiting for reward calls.

`abort_in_flight` sets the context's abort flag (samples that have not started are then marked ABORTED
without a call), sends `/abort_request {abort_all}` to every engine behind the router and waits until no
group is generating any more. A request that reached an engine after the abort went out (it was on the wire)
is caught by repeating the abort every `ABORT_RETRY_S` while something still generates. Then
`cancel_runs` cancels the group tasks: a task past generation is at most waiting for its reward, which is
not worth waiting for (slime waited for every pending task, issue #2176). Aborted engines answer with the
partial output, which the samples keep (tokens, log-probs, mask aligned) for `--partial-rollout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from slime.sglang.rollout.context import RolloutContext
from slime.sglang.rollout.group_run import GroupRun
from slime.types import EngineError

logger = logging.getLogger(__name__)
ABORT_RETRY_S = 0.5


async def abort_in_flight(ctx: RolloutContext, runs: Iterable[GroupRun]) -> int:
    """Abort generation of `runs` on every engine and wait until none generates; returns abort rounds sent."""
    ctx.aborted = True
    pending = [r for r in runs if not r.generation_done.is_set()]
    rounds = 0
    while pending:
        try:
            await ctx.runtime.client.abort_all()
        except EngineError as exc:  # one engine failing to answer must not hang the rollout
            logger.warning("abort_all failed (will retry while requests are in flight): %s", exc)
        rounds += 1
        waits = asyncio.gather(*(r.generation_done.wait() for r in pending))
        try:
            await asyncio.wait_for(waits, ABORT_RETRY_S)
        except TimeoutError:
            pass
        pending = [r for r in pending if not r.generation_done.is_set()]
    return rounds


async def cancel_runs(tasks: Mapping[asyncio.Task[object], object]) -> None:
    """Cancel group tasks (after their generation ended) and wait until they are gone."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
