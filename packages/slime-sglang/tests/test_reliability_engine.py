"""Reliability of the serving layer on its own: faults, load, determinism and security of engines + the real router.

Uses the session's shared group (two local engines behind sglang-router, 1 s health checks). Faults are real:
SIGKILL of an engine's or the router's process group while requests are in flight. Tests that replace a process
leave the group with the same number of engines and the router on its old URL. Whole-job fault handling (the
rollout rerun, re-sync of the weight version, no sample lost) is tested in slime.train's `tests/reliability`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

from slime.sglang.blocking_http import request_json
from slime.sglang.client import EngineClient
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.group_healing import heal_group
from slime.sglang.managed_process import ManagedProcess
from slime.sglang.redaction import is_secret_flag, redact_argv, redact_text, secret_values
from slime.sglang.router import Router, RouterConfig
from slime.types import EngineError


@pytest.fixture(scope="module")
def group(engine_config):
    """This module SIGKILLs engines and the router: it gets its own group, never the session-wide one that
    other test files of the same pytest worker share (a router it failed to heal would fail them all)."""
    config = EngineGroupConfig(
        engine=engine_config,
        num_engines=2,
        router=RouterConfig(policy="round_robin", health_check_interval_secs=1, log_dir=engine_config.log_dir),
    )
    with EngineGroup(config) as started:
        yield started

LONG = {"max_new_tokens": 120, "temperature": 1.0, "ignore_eos": True}


def listener_pid(url: str) -> int:
    """The pid of the process listening on `url`'s port."""
    port = urlparse(url).port
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on {url}")


def sigkill_server(url: str) -> None:
    """SIGKILL the process group of the server at `url` (the server, its supervisor, anything it spawned)."""
    os.killpg(os.getpgid(listener_pid(url)), signal.SIGKILL)


def finished_requests(urls: list[str]) -> int:
    """Requests the local servers at `urls` have completed."""
    return sum(request_json("GET", u + "/server_info")[1]["internal_states"][0]["num_finished_reqs"] for u in urls)


def wait_running(url: str, timeout_s: float = 300.0) -> int:
    """Wait until the engine at `url` has a request in its running batch; returns how many are running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        load = request_json("GET", url + "/get_load")[1][0]
        if load["num_reqs"] - load["num_waiting_reqs"] > 0:
            return int(load["num_reqs"] - load["num_waiting_reqs"])
        time.sleep(0.02)
    raise AssertionError(f"no request ever ran on {url}")


def test_router_forwards_sampling_seed(group: EngineGroup, make_prompts) -> None:
    """sglang-router drops sampling_params keys it does not know; `sampling_seed` must reach the engine."""
    prompt = make_prompts(1, seed=21)[0]
    seeded = {"max_new_tokens": 24, "temperature": 1.0, "ignore_eos": True, "sampling_seed": 1234}

    async def go():
        async with EngineClient(group.router_url) as router, EngineClient(group.engine_urls[0]) as engine:
            return (
                [await router.generate(prompt, seeded) for _ in range(3)],  # round robin: both engines serve
                await engine.generate(prompt, seeded),
                await router.generate(prompt, {**seeded, "sampling_seed": 99}),
                [await engine.generate(prompt, {**seeded, "sampling_seed": None}) for _ in range(2)],
            )

    via_router, direct, other_seed, unseeded = asyncio.run(go())
    # Without the seed, calls 1 and 3 (same engine, its generator advanced in between) would differ.
    assert len({out.output_ids for out in via_router}) == 1
    assert via_router[0].output_ids == direct.output_ids
    assert other_seed.output_ids != direct.output_ids  # 24 free tokens at T=1: equal only if the seed were dropped
    assert unseeded[0].output_ids != unseeded[1].output_ids  # unseeded sampling is not accidentally fixed


def test_rollout_sends_one_seed_per_sample_under_deterministic_inference(group: EngineGroup, model_dir) -> None:
    import argparse

    from slime.sglang.rollout import generate, run_on_rollout_loop, shutdown_rollout_runtimes
    from slime.sglang.rollout.sampling import sample_sampling_seed
    from slime.types import Sample

    host, port = group.router_url.removeprefix("http://").split(":")
    args = argparse.Namespace(sglang_router_ip=host, sglang_router_port=int(port), hf_checkpoint=str(model_dir),
                              rollout_seed=7, sglang_enable_deterministic_inference=True,
                              apply_chat_template_kwargs={})  # fmt: skip
    params = {"max_new_tokens": 16, "temperature": 1.0, "ignore_eos": True}

    async def go(index: int) -> tuple[int, ...]:
        sample = await generate(args, Sample(index=index, prompt="hello there", tokens=[5, 6, 7, 8]), params)
        return tuple(sample.tokens)

    try:
        outputs = [run_on_rollout_loop(go(i)) for i in (3, 3, 4)]
    finally:
        shutdown_rollout_runtimes()
    assert outputs[0] == outputs[1] != outputs[2]
    assert sample_sampling_seed(args, 3) == sample_sampling_seed(args, 3) != sample_sampling_seed(args, 4)
    args.sglang_enable_deterministic_inference = False
    assert sample_sampling_seed(args, 3) is None


@pytest.mark.local_only
def test_sigkilled_engine_in_flight_requests_are_retried_and_heal_replaces_it(group: EngineGroup, make_prompts):
    victim = group.engine_urls[1]
    survivor = group.engine_urls[0]
    prompts = make_prompts(8, seed=31)

    async def go():
        async with EngineClient(group.router_url) as client:
            tasks = [asyncio.create_task(client.generate(p, LONG)) for p in prompts]
            running = await asyncio.to_thread(wait_running, victim)
            sigkill_server(victim)
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 600)
            return running, results

    running_at_kill, results = asyncio.run(go())
    assert running_at_kill >= 1
    # Every request ends: sglang-router retries a request whose worker died on another worker; whatever it
    # cannot retry fails with a clear error (the rollout then reruns it). Nothing hangs, nothing half-done.
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, EngineError), repr(result)
        else:
            assert len(result.output_ids) == 120 and result.finish_reason == "length"
    report = heal_group(group)
    assert report.removed == (victim,) and len(report.added) == 1 and not report.router_restarted
    replacement = report.added[0]
    assert sorted(w["url"] for w in group.router.workers()) == sorted([survivor, replacement])
    assert all(w["is_healthy"] for w in group.router.workers())
    before = finished_requests([replacement])

    async def after():
        async with EngineClient(group.router_url) as client:
            return await asyncio.gather(*(client.generate(p, {"max_new_tokens": 2}) for p in prompts))

    assert all(len(out.output_ids) == 2 for out in asyncio.run(after()))
    assert finished_requests([replacement]) > before  # the replacement serves
    assert heal_group(group).changed is False  # a healthy group is left alone


@pytest.mark.local_only
def test_sigkilled_router_is_restarted_on_its_old_port(group: EngineGroup, make_prompts) -> None:
    url, engines = group.router_url, sorted(group.engine_urls)
    prompts = make_prompts(4, seed=41)

    async def go(*, kill: bool):
        async with EngineClient(url) as client:
            tasks = [asyncio.create_task(client.generate(p, LONG)) for p in prompts]
            if kill:
                await asyncio.to_thread(wait_running, group.engine_urls[0])
                sigkill_server(url)
            return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 600)

    cut = asyncio.run(go(kill=True))
    assert all(isinstance(r, EngineError) for r in cut), cut  # in flight through the dead router: a clear error
    report = heal_group(group)
    assert report.router_restarted and report.removed == () and report.added == ()
    assert group.router_url == url
    assert sorted(w["url"] for w in group.router.workers()) == engines
    served = asyncio.run(go(kill=False))
    assert all(len(out.output_ids) == 120 for out in served)


@pytest.mark.local_only
def test_500_concurrent_generates_through_the_router_none_lost(group: EngineGroup, make_prompts) -> None:
    """The CI slice of benchmarks/bench_router_load.py (10,000 requests there)."""
    prompts = make_prompts(500, seed=51, high=12)
    urls = group.engine_urls
    before = finished_requests(urls)

    async def go():
        async with EngineClient(group.router_url, max_connections=500) as client:
            calls = [client.generate(p, {"max_new_tokens": 3, "temperature": 1.0, "ignore_eos": True}) for p in prompts]
            return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 900)

    results = asyncio.run(go())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert all(len(out.output_ids) == 3 and len(out.output_log_probs) == 3 for out in results)
    assert finished_requests(urls) - before == 500  # each request served exactly once
    loads = [request_json("GET", u + "/get_load")[1][0]["num_reqs"] for u in urls]
    assert loads == [0] * len(urls)  # nothing left queued or running


def test_every_server_we_start_listens_on_loopback_only(group: EngineGroup) -> None:
    """Router (HTTP and Prometheus ports) and engines, and everything they spawned."""
    listening = []
    for proc in psutil.Process().children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [(proc.pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    ports = {urlparse(u).port for u in [group.router_url, *group.engine_urls]}
    assert ports <= {port for _, _, port in listening}
    assert all(ip in ("127.0.0.1", "::1") for _, ip, _ in listening), listening


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_local_server_refuses_a_non_loopback_bind_unless_told(host: str, tiny_qwen3_dir: Path, capsys) -> None:
    from slime.sglang.local_server.cli import main, parse_config

    with pytest.raises(SystemExit) as exit_info:
        main(["--model-path", str(tiny_qwen3_dir), "--host", host])
    assert exit_info.value.code == 2
    assert "not a loopback address; servers bind 127.0.0.1 unless --allow-remote" in capsys.readouterr().err
    config, _ = parse_config(["--model-path", str(tiny_qwen3_dir), "--host", host, "--allow-remote"])
    assert config.host == host


SECRET_FLAGS = ["--api-key", "--admin-api-key", "--control-plane-api-keys", "--hf-token", "--router-api-key",
                "--db-password", "--client-secret"]  # fmt: skip
PLAIN_FLAGS = ["--max-total-tokens", "--max-prefill-tokens", "--tokenizer-path", "--reward-key", "--input-key"]


@pytest.mark.parametrize("flag", SECRET_FLAGS + PLAIN_FLAGS)
def test_which_flags_are_secret(flag: str) -> None:
    assert is_secret_flag(flag) is (flag in SECRET_FLAGS)
    assert is_secret_flag(flag + "=x") is (flag in SECRET_FLAGS)


def test_redaction_of_commands_and_text() -> None:
    argv = ["python", "-m", "srv", "--port", "1", "--api-key", "k1", "--control-plane-api-keys", "a:b:admin:k2",
            "c:d:user:k3", "--hf-token=k4", "--max-total-tokens", "99"]  # fmt: skip
    assert secret_values(argv) == ["k1", "a:b:admin:k2", "c:d:user:k3", "k4"]
    assert redact_argv(argv) == ["python", "-m", "srv", "--port", "1", "--api-key", "***",
                                 "--control-plane-api-keys", "***", "***", "--hf-token=***",
                                 "--max-total-tokens", "99"]  # fmt: skip
    assert redact_text("key=k1 and a:b:admin:k2", secret_values(argv)) == "key=*** and ***"


def test_secrets_stay_out_of_process_logs_and_errors(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    echo_args = "import sys; print('starting with', sys.argv[1:], flush=True); sys.exit(3)"
    process = ManagedProcess([sys.executable, "-c", echo_args, "--api-key", secret, f"--hf-token={secret}x"],
                             name="leaky", log_path=tmp_path / "leaky.log")  # fmt: skip
    process.start()
    with pytest.raises(EngineError) as info:
        process.wait_http_ok("http://127.0.0.1:9", ("/health",), timeout_s=120)
    message = str(info.value)
    assert "exited with code 3" in message and "--api-key ***" in message and "--hf-token=***" in message
    assert secret not in message  # neither in the quoted command nor in the quoted log tail
    first_line = (tmp_path / "leaky.log").read_text().splitlines()[0]
    assert first_line.startswith("$ ") and secret not in first_line  # our own echo of the command


def test_router_api_key_is_not_logged(tmp_path: Path) -> None:
    secret = "router-secret-5f9c2e"
    router = Router(RouterConfig(extra_args=("--api-key", secret), log_dir=str(tmp_path)))
    try:
        router.start()
        assert request_json("GET", router.url + "/health")[0] == 200
    finally:
        router.stop()
    logs = list(tmp_path.glob("router-*.log"))
    assert logs and all(secret not in log.read_text(errors="replace") for log in logs)
    assert "--api-key ***" in logs[0].read_text()
