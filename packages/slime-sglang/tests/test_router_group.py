"""The real sglang-router in front of two local servers: spread, exactness, abort, dead-worker removal."""

from __future__ import annotations

import asyncio
import time

import pytest

from slime.sglang.blocking_http import request_json
from slime.sglang.client import EngineClient
from slime.sglang.engine_group import EngineGroup
from slime.sglang.router import Router, RouterConfig
from slime.types import EngineError, Sample, SamplingParams, Status


def served_counts(group: EngineGroup) -> list[int]:
    """Requests each engine has completed: the local server's counter, or SGLang's `--enable-metrics` counter."""
    counts = []
    for url in group.engine_urls:
        status, info = request_json("GET", url + "/server_info")
        if info.get("backend") == "slime.sglang.local_server":
            counts.append(info["internal_states"][0]["num_finished_reqs"])
            continue
        status, metrics = request_json("GET", url + "/metrics")
        assert status == 200, "start SGLang with --enable-metrics for this test"
        lines = [line for line in metrics.splitlines() if line.startswith("sglang:num_requests_total")]
        counts.append(int(sum(float(line.rsplit(" ", 1)[1]) for line in lines)))
    return counts


def test_256_concurrent_generates_spread_over_both_workers_with_exact_logprobs(
    group: EngineGroup, teacher_forced_many, make_prompts, logprob_atol
) -> None:
    prompts = make_prompts(256, seed=11, high=16)
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    before = served_counts(group)

    async def go():
        async with EngineClient(group.router_url) as client:
            return await asyncio.gather(*(client.generate(p, params) for p in prompts))

    outputs = asyncio.run(go())
    served = [after - b for after, b in zip(served_counts(group), before, strict=True)]
    assert len(outputs) == 256 and all(out.finish_reason in ("stop", "length") for out in outputs)
    assert sum(served) == 256 and min(served) > 0, served
    references = teacher_forced_many([(p, list(out.output_ids)) for p, out in zip(prompts, outputs, strict=True)])
    worst = max(
        abs(a - b)
        for out, ref in zip(outputs, references, strict=True)
        for a, b in zip(out.output_log_probs, ref, strict=True)
    )
    assert worst < logprob_atol


def wait_until_running(group: EngineGroup, count: int) -> None:
    """Wait until `count` requests are in the engines' running batches (so each has produced a token)."""
    deadline = time.monotonic() + 300
    while True:
        loads = [request_json("GET", u + "/get_load")[1] for u in group.engine_urls]
        if sum(d["num_reqs"] - d["num_waiting_reqs"] for load in loads for d in load) >= count:
            return
        assert time.monotonic() < deadline, f"requests never started running: {loads}"
        time.sleep(0.05)


def test_abort_all_returns_partial_tokens_with_finish_reason_abort(group: EngineGroup, make_prompts) -> None:
    prompts = make_prompts(4, seed=12)
    params = {"max_new_tokens": 30_000, "temperature": 1.0, "ignore_eos": True}

    async def go():
        async with EngineClient(group.router_url) as client:
            samples = [Sample(index=i, tokens=list(p)) for i, p in enumerate(prompts)]
            tasks = [asyncio.create_task(client.generate_sample(s, params)) for s in samples[:2]]
            tasks += [asyncio.create_task(client.generate(p, params)) for p in prompts[2:]]
            await asyncio.to_thread(wait_until_running, group, 4)
            await client.abort_all()
            return await asyncio.gather(*tasks)

    results = asyncio.run(go())
    for sample in results[:2]:
        assert sample.status is Status.ABORTED and 0 < sample.response_length < 30_000
        assert len(sample.rollout_log_probs) == sample.response_length == len(sample.loss_mask)
        sample.validate()
    for out in results[2:]:
        assert out.finish_reason == "abort" and 0 < len(out.output_ids) == len(out.output_log_probs) < 30_000


def test_killed_worker_is_detected_and_removed(group: EngineGroup) -> None:
    victim = group.add_engine()
    assert victim in [w["url"] for w in group.router.workers()]
    next(e for e in group.engines if e.url == victim).kill()
    assert group.remove_dead_engines() == [victim]
    assert sorted(w["url"] for w in group.router.workers()) == sorted(group.engine_urls)
    assert victim not in group.engine_urls and len(group.engines) == 2

    async def go():
        async with EngineClient(group.router_url) as client:
            return await asyncio.gather(
                *(client.generate([5, 6, 7], {"max_new_tokens": 2, "ignore_eos": True}) for _ in range(4))
            )

    assert all(len(out.output_ids) == 2 for out in asyncio.run(go()))


def test_external_router_mode_registers_and_removes(group: EngineGroup) -> None:
    host, port = group.router_url.removeprefix("http://").split(":")
    external = Router(RouterConfig(ip=host, port=int(port), startup_timeout_s=5))
    assert external.start() == group.router_url
    engine_url = group.engine_urls[1]
    assert external.remove_worker(engine_url)
    assert engine_url not in [w["url"] for w in group.router.workers()]
    external.add_worker(engine_url)
    assert engine_url in [w["url"] for w in group.router.workers()]
    external.stop()  # leaves an external router running
    assert request_json("GET", group.router_url + "/health")[0] == 200


def test_router_failures_are_clear(group: EngineGroup) -> None:
    host, port = group.router_url.removeprefix("http://").split(":")
    external = Router(RouterConfig(ip=host, port=int(port), startup_timeout_s=2))
    external.start()
    with pytest.raises(EngineError, match="did not list worker http://127.0.0.1:9 as healthy"):
        external.add_worker("http://127.0.0.1:9")
    external.remove_worker("http://127.0.0.1:9")  # the failed registration leaves nothing behind
    with pytest.raises(EngineError, match="no router answers"):
        Router(RouterConfig(ip="127.0.0.1", port=9)).start()


def test_client_control_calls_reach_every_worker(group: EngineGroup) -> None:
    async def go():
        async with EngineClient(group.router_url) as client:
            workers = await client.worker_urls()
            await client.flush_cache()
            infos = [await client.model_info(u) for u in workers]
            return workers, infos

    workers, infos = asyncio.run(go())
    assert sorted(workers) == sorted(group.engine_urls)
    assert all(info["model_type"] == "qwen3" for info in infos)
