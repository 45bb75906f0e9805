"""The reward hub's dispatch (by --rm-type / metadata) and remote_rm against a real local HTTP server."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from slime_testkit.reward_server import with_reward_server

from slime.sglang.rewards import (
    RemoteRewardConfig,
    batched_rm_hub_reward,
    check_rm_type,
    post_reward,
    rm_hub_reward,
    shutdown_grading_pool,
)
from slime.types import ConfigError, EngineError, Sample


@pytest.fixture(scope="module", autouse=True)
def _stop_grading_pool() -> Iterator[None]:
    yield
    shutdown_grading_pool()  # do not leave worker processes behind in a long-lived pytest worker


def _args(**kw: Any) -> types.SimpleNamespace:
    base = {"rm_type": None, "rm_url": None, "reward_key": None}
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_math_types_grade_in_the_process_pool_and_metadata_overrides_the_flag() -> None:
    samples = [
        Sample(index=0, response="\\boxed{\\frac{1}{2}}", label="0.5"),
        Sample(index=1, response="\\boxed{3}", label="4"),
        Sample(index=2, response="Paris", label="paris", metadata={"rm_type": "f1"}),
        Sample(index=3, response="x\nAnswer: 4", label="4", metadata={"rm_type": "dapo"}),
    ]
    rewards = asyncio.run(batched_rm_hub_reward(_args(rm_type="math"), samples))
    assert rewards[:3] == [1.0, 0.0, 1.0]
    assert rewards[3]["score"] == 1.0


def test_boxed_prefix_grades_the_boxed_content() -> None:
    sample = Sample(response="long talk \\boxed{Paris}", label="paris")
    assert asyncio.run(rm_hub_reward(_args(rm_type="boxed_f1"), sample)) == 1.0
    assert asyncio.run(rm_hub_reward(_args(rm_type="f1"), sample)) < 1.0


def test_startup_checks_name_the_flag_and_the_fix() -> None:
    with pytest.raises(ConfigError, match="--rm-type is 'mathh'.*math, deepscaler"):
        check_rm_type("mathh")
    with pytest.raises(ConfigError, match="needs --rm-url"):
        check_rm_type("remote_rm", _args())
    check_rm_type("boxed_gpqa")
    with pytest.raises(ConfigError, match="neither --rm-type nor --custom-rm-path"):
        asyncio.run(rm_hub_reward(_args(), Sample(response="x")))


def _fast(url: str, **kw: Any) -> RemoteRewardConfig:
    return RemoteRewardConfig(url=url, backoff_base_s=0.01, max_backoff_s=0.02, jitter_s=0.0, **kw)


def test_remote_rm_retries_until_the_server_answers() -> None:
    seen: list[dict[str, Any]] = []

    async def flaky(request: web.Request) -> web.Response:
        seen.append(await request.json())
        if len(seen) < 3:
            return web.Response(status=503, text="warming up")
        return web.json_response({"score": 0.75})

    async def body(url: str) -> Any:
        sample = Sample(prompt="q", response="r", label="l")
        args = _args(rm_type="remote_rm", rm_url=url, rm_max_attempts=5)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(RemoteRewardConfig, "from_args", classmethod(lambda cls, a: _fast(a.rm_url, max_attempts=5)))
            return await rm_hub_reward(args, sample)

    assert asyncio.run(with_reward_server(flaky, body)) == {"score": 0.75}
    assert seen == [{"prompt": "q", "response": "r", "label": "l"}] * 3


def test_remote_rm_gives_a_clear_error_after_the_last_try() -> None:
    calls = 0

    async def down(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=500, text="boom")

    async def body(url: str) -> Any:
        return await post_reward(_fast(url, max_attempts=3), {"prompt": "q"})

    with pytest.raises(EngineError, match=r"failed 3 times.*last error: HTTP 500: boom"):
        asyncio.run(with_reward_server(down, body))
    assert calls == 3


def test_remote_rm_times_out_each_try() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response(1.0)

    async def body(url: str) -> Any:
        return await post_reward(_fast(url, max_attempts=2, timeout_s=0.2), {})

    with pytest.raises(EngineError, match="failed 2 times.*TimeoutError"):
        asyncio.run(with_reward_server(slow, body))


def test_remote_rm_does_not_retry_a_rejected_request() -> None:
    calls = 0

    async def reject(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=422, text="missing label")

    async def body(url: str) -> Any:
        return await post_reward(_fast(url), {})

    with pytest.raises(EngineError, match="HTTP 422: missing label"):
        asyncio.run(with_reward_server(reject, body))
    assert calls == 1
