"""A reward server that hangs, drops connections, is down or answers garbage: bounded retries, then one clear error.

Real aiohttp servers on 127.0.0.1 (port 0). The whole-job behaviour (the rollout is rerun and no sample is lost)
is tested in slime.train's `tests/reliability`; these pin what the reward layer itself promises.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web
from slime_testkit.reward_server import Handler, with_reward_server

from slime.sglang.rewards import RemoteRewardConfig, post_reward
from slime.sglang.rollout.scoring import check_reward
from slime.types import ContractError, EngineError, Sample


def _fast(url: str, **kw: Any) -> RemoteRewardConfig:
    return RemoteRewardConfig(url=url, backoff_base_s=0.01, max_backoff_s=0.02, jitter_s=0.0, **kw)


def _post(handler: Handler, **config: Any) -> Any:
    return asyncio.run(with_reward_server(handler, lambda url: post_reward(_fast(url, **config), {"prompt": "q"})))


@pytest.mark.parametrize("garbage", ["<html>502 Bad Gateway</html>", "{not json", "\x00\x01binary"])
def test_garbage_answer_is_one_clear_error_without_retries(garbage: str) -> None:
    calls = []

    async def broken(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=200, text=garbage, content_type="text/html")

    with pytest.raises(EngineError, match=r"reward server http://127\.0\.0\.1:\d+/reward answered non-JSON") as info:
        _post(broken, max_attempts=5)
    assert garbage[:20] in str(info.value) or repr(garbage[:20])[1:-1] in str(info.value)
    assert len(calls) == 1  # a well-formed HTTP answer with a bad body is not a transient failure


def test_server_that_hangs_is_abandoned_after_bounded_tries() -> None:
    calls = []
    release = asyncio.Event()  # lets the hung handlers end, so the server shuts down at once afterwards

    async def hang(request: web.Request) -> web.Response:
        calls.append(1)
        await release.wait()
        return web.json_response(1.0)

    async def body(url: str) -> Any:
        try:
            return await post_reward(_fast(url, max_attempts=3, timeout_s=0.2), {})
        finally:
            release.set()

    with pytest.raises(EngineError, match=r"failed 3 times \(each with a 0\.2 s timeout\).*TimeoutError"):
        asyncio.run(with_reward_server(hang, body))
    assert len(calls) == 3


def test_server_that_drops_connections_is_retried_until_it_answers() -> None:
    calls = []

    async def flaky(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        if len(calls) < 3:
            request.transport.close()  # type: ignore[union-attr]  # mid-request: the client sees a broken connection
            await asyncio.sleep(0.1)
        return web.json_response({"score": 0.5})

    assert _post(flaky, max_attempts=5) == {"score": 0.5}
    assert len(calls) == 3


def test_server_that_is_down_fails_naming_the_url_after_every_try() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/reward"
    with pytest.raises(EngineError, match=rf"reward server {url} failed 4 times.*Check --rm-url"):
        asyncio.run(post_reward(_fast(url, max_attempts=4), {}))


async def _reward_fn(args: Any, sample: Sample, **kwargs: Any) -> Any:
    return None


@pytest.mark.parametrize(
    ("value", "key", "needle"),
    [
        ("0.5", None, "returned str for sample 7; it must return a number or a dict"),
        (None, None, "returned NoneType for sample 7"),
        ([1.0], None, "returned list for sample 7"),
        ({"acc": 1.0}, "score", "whose key 'score' (--reward-key) is None, not a number"),
        ({"score": "high"}, "score", "whose key 'score' (--reward-key) is 'high', not a number"),
    ],
)
def test_reward_values_that_are_not_numbers_name_the_function_and_sample(value: Any, key: str | None, needle: str):
    with pytest.raises(ContractError, match="_reward_fn") as info:
        check_reward(value, _reward_fn, Sample(index=7), key)
    assert needle in str(info.value)
