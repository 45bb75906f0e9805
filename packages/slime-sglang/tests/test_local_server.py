"""The local server over real HTTP: exact log-probs, sampling options, stops, aborts and clear errors."""

from __future__ import annotations

import asyncio

import pytest

from slime.sglang.client import EngineClient
from slime.sglang.engine_process import EngineProcess
from slime.types import EngineError, SamplingParams

pytestmark = pytest.mark.local_only


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_concurrent_logprobs_equal_teacher_forcing(
    local_engine: EngineProcess, teacher_forced_many, make_prompts, temperature
) -> None:
    prompts = make_prompts(24, seed=1)
    params = SamplingParams(max_new_tokens=12, temperature=temperature, top_p=0.9 if temperature == 0.7 else 1.0)

    async def go():
        async with EngineClient(local_engine.url) as client:
            return await asyncio.gather(*(client.generate(p, params) for p in prompts))

    outputs = run(go())
    references = teacher_forced_many(
        [(p, list(o.output_ids)) for p, o in zip(prompts, outputs, strict=True)], temperature
    )
    for out, reference in zip(outputs, references, strict=True):
        assert out.finish_reason in ("length", "stop")
        assert len(out.output_ids) == len(out.output_log_probs) > 0
        assert max(abs(a - b) for a, b in zip(out.output_log_probs, reference, strict=True)) < 1e-5


def test_greedy_equals_top_k_1_and_is_deterministic(local_engine: EngineProcess, make_prompts) -> None:
    prompt = make_prompts(1, seed=2)[0]

    async def go():
        async with EngineClient(local_engine.url) as client:
            greedy = await client.generate(prompt, SamplingParams(max_new_tokens=10, temperature=0.0))
            top1 = await client.generate(prompt, SamplingParams(max_new_tokens=10, temperature=1.0, top_k=1))
            again = await client.generate(prompt, SamplingParams(max_new_tokens=10, temperature=0.0))
            return greedy, top1, again

    greedy, top1, again = run(go())
    assert greedy.output_ids == top1.output_ids == again.output_ids


def test_sampling_seed_reproduces(local_engine: EngineProcess, make_prompts) -> None:
    prompt = make_prompts(1, seed=3)[0]
    params = {"max_new_tokens": 16, "temperature": 1.0, "sampling_seed": 1234}

    async def go():
        async with EngineClient(local_engine.url) as client:
            return [await client.generate(prompt, params) for _ in range(2)]

    first, second = run(go())
    assert first.output_ids == second.output_ids


def test_stop_token_ids_and_length(local_engine: EngineProcess, make_prompts) -> None:
    prompt = make_prompts(1, seed=4)[0]

    async def go():
        async with EngineClient(local_engine.url) as client:
            free = await client.generate(prompt, SamplingParams(max_new_tokens=8, temperature=0.0))
            stop_at = free.output_ids[3]
            stopped = await client.generate(
                prompt, SamplingParams(max_new_tokens=8, temperature=0.0, stop_token_ids=(stop_at,))
            )
            return free, stopped, stop_at

    free, stopped, stop_at = run(go())
    assert free.finish_reason == "length" and len(free.output_ids) == 8
    first = free.output_ids.index(stop_at)
    assert stopped.finish_reason == "stop"
    assert stopped.output_ids == free.output_ids[: first + 1]  # the stop token is returned, as SGLang does


def test_stop_string_trims_text(local_engine: EngineProcess, make_prompts) -> None:
    prompt = make_prompts(1, seed=5)[0]

    async def go():
        async with EngineClient(local_engine.url) as client:
            free = await client.generate(prompt, {"max_new_tokens": 12, "temperature": 0.0})
            stop = free.text[4:6] if len(free.text) >= 6 else free.text[-1:]
            trimmed = await client.generate(prompt, {"max_new_tokens": 12, "temperature": 0.0, "stop": [stop]})
            kept = await client.generate(
                prompt, {"max_new_tokens": 12, "temperature": 0.0, "stop": [stop], "no_stop_trim": True}
            )
            return free, stop, trimmed, kept

    free, stop, trimmed, kept = run(go())
    assert trimmed.finish_reason == "stop"
    assert stop not in trimmed.text and kept.text.endswith(stop)
    assert free.output_ids[: len(trimmed.output_ids)] == trimmed.output_ids


def test_bad_requests_give_clear_errors(local_engine: EngineProcess) -> None:
    async def go():
        async with EngineClient(local_engine.url) as client:
            errors = []
            for params in ({"max_new_tokens": 4, "frequency_penalty": 0.5}, {"max_new_tokens": 4, "bogus": 1}):
                with pytest.raises(EngineError) as info:
                    await client.generate([5, 6], params)
                errors.append(str(info.value))
            with pytest.raises(EngineError) as info:
                await client.generate([5, 100000], {"max_new_tokens": 4})
            errors.append(str(info.value))
            return errors

    penalty, unknown, vocab = run(go())
    assert "HTTP 400" in penalty and "frequency_penalty" in penalty
    assert "bogus" in unknown
    assert "outside the vocabulary" in vocab


def test_unreachable_server_is_a_clear_error() -> None:
    async def go():
        async with EngineClient("http://127.0.0.1:9") as client:
            await client.generate([1, 2], {"max_new_tokens": 1})

    with pytest.raises(EngineError, match="cannot connect"):
        run(go())


def test_release_and_pause_hold_generation_until_resumed(local_engine: EngineProcess) -> None:
    async def go():
        async with EngineClient(local_engine.url) as client:
            await client.release_memory_occupation()
            held = asyncio.create_task(client.generate([5, 6], {"max_new_tokens": 3, "ignore_eos": True}))
            info = await client.server_info()
            await asyncio.sleep(0.3)
            assert not held.done()
            await client.resume_memory_occupation(["weights"])
            await asyncio.sleep(0.3)
            assert not held.done()  # kv_cache and cuda_graph are still released
            await client.resume_memory_occupation()
            first = await held
            await client.pause_generation("retract")
            paused = asyncio.create_task(client.generate([5, 6], {"max_new_tokens": 3, "ignore_eos": True}))
            await asyncio.sleep(0.3)
            assert not paused.done()
            await client.continue_generation()
            return info, first, await paused

    info, first, second = run(go())
    assert info["memory_released_tags"] == ["cuda_graph", "kv_cache", "weights"]
    assert len(first.output_ids) == len(second.output_ids) == 3


def test_health_generate_and_info_routes(local_engine: EngineProcess) -> None:
    from slime.sglang.blocking_http import request_json

    for path in ("/health", "/health_generate", "/get_server_info", "/get_model_info", "/flush_cache"):
        assert request_json("GET", local_engine.url + path)[0] == 200, path
    status, body = request_json("POST", local_engine.url + "/generate", {"input_ids": [1], "stream": True})
    assert status == 400 and "does not stream" in body["error"]["message"]
