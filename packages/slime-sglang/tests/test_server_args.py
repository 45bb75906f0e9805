"""`--sglang-*` pass-through, engine configs and launch command lines (no process is started)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from slime.sglang.server_args import (
    EngineConfig,
    known_server_flags,
    launch_command,
    split_sglang_args,
    validate_server_args,
)
from slime.types import ConfigError


def test_split_translates_passthrough_and_keeps_slime_owned_flags() -> None:
    argv = ["--hf-checkpoint", "/m", "--sglang-mem-fraction-static", "0.7", "--sglang-router-ip", "10.0.0.1",
            "--sglang-router-port", "3000", "--sglang-enable-metrics", "--sglang-cuda-graph-bs", "1", "2", "4",
            "--sglang-log-level=warning", "--sglang-server-concurrency", "64", "--lr", "1e-6"]  # fmt: skip
    rest, engine = split_sglang_args(argv)
    assert engine == ("--mem-fraction-static", "0.7", "--enable-metrics", "--cuda-graph-bs", "1", "2", "4",
                      "--log-level=warning")  # fmt: skip
    assert rest == ["--hf-checkpoint", "/m", "--sglang-router-ip", "10.0.0.1", "--sglang-router-port", "3000",
                    "--sglang-server-concurrency", "64", "--lr", "1e-6"]  # fmt: skip


def test_engine_config_derives_tp_from_gpus_and_pp() -> None:
    config = EngineConfig(model_path="/m", num_gpus_per_engine=8, server_args=("--pp-size", "2"))
    assert (config.tp_size, config.pp_size) == (4, 2)
    command = launch_command(config, port=31000, nccl_port=31001)
    assert command[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert command[3:] == ["--model-path", "/m", "--tp-size", "4", "--host", "127.0.0.1", "--port", "31000",
                           "--nccl-port", "31001", "--base-gpu-id", "0", "--pp-size", "2"]  # fmt: skip
    local = launch_command(EngineConfig(model_path="/m", backend="local"), port=5)
    assert local[2] == "slime.sglang.local_server" and "--nccl-port" not in local and "--base-gpu-id" not in local


def test_engines_take_consecutive_gpus_after_the_base() -> None:
    config = EngineConfig(model_path="/m", num_gpus_per_engine=2, base_gpu_id=4)
    first = [launch_command(config, port=1, gpu_slot=slot) for slot in range(2)]
    assert [c[c.index("--base-gpu-id") + 1] for c in first] == ["4", "6"]
    pinned = launch_command(EngineConfig(model_path="/m", server_args=("--base-gpu-id", "3")), port=1, gpu_slot=5)
    assert pinned.count("--base-gpu-id") == 1 and pinned[pinned.index("--base-gpu-id") + 1] == "3"  # the user's wins
    with pytest.raises(ConfigError, match="base_gpu_id"):
        EngineConfig(model_path="/m", base_gpu_id=-1)


def test_a_replacement_engine_takes_the_dead_engines_gpus() -> None:
    from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
    from slime.sglang.engine_process import EngineProcess

    config = EngineGroupConfig(engine=EngineConfig(model_path="/m", num_gpus_per_engine=2), num_engines=3)
    group = EngineGroup(config)
    assert group._free_gpu_slots(3) == [0, 1, 2]
    group.engines = [EngineProcess(config.engine, index=i, gpu_slot=i) for i in (0, 2)]  # engine 1 died
    assert group._free_gpu_slots(1) == [1]
    assert group._free_gpu_slots(2) == [1, 3]  # growing past the configured count takes new slots


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_path": ""}, "--hf-checkpoint"),
        ({"model_path": "/m", "backend": "vllm"}, "backend"),
        ({"model_path": "/m", "num_gpus_per_engine": 0}, "--rollout-num-gpus-per-engine"),
        ({"model_path": "/m", "num_gpus_per_engine": 3, "server_args": ("--pp-size", "2")}, "not divisible"),
        ({"model_path": "/m", "server_args": ("--port", "1")}, "set by slime"),
        ({"model_path": "/m", "server_args": ("--tp-size=2",)}, "--rollout-num-gpus-per-engine for tp"),
    ],
)
def test_engine_config_errors_name_the_fix(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig(**kwargs)


def test_validation_against_the_local_server_flags() -> None:
    known = known_server_flags("local")
    assert {"--max-running-requests", "--dtype", "--random-seed"} <= known
    validate_server_args(("--max-running-requests", "8", "--dtype=float32"), known, backend="local")
    with pytest.raises(ConfigError, match="Did you mean --sglang-random-seed"):
        validate_server_args(("--random-sed", "1"), known, backend="local")
    validate_server_args(("--anything",), None, backend="sglang")  # sglang not installed: checked on the GPU


@pytest.mark.skipif(importlib.util.find_spec("sglang") is not None, reason="sglang is installed here")
def test_sglang_flags_are_unknown_without_sglang() -> None:
    assert known_server_flags("sglang") is None


def test_sglang_engines_get_a_health_endpoint_that_does_not_generate() -> None:
    from slime.sglang.engine_process import engine_env

    name = "SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION"
    assert engine_env(EngineConfig(model_path="/m"), environ={}) == {name: "false"}
    assert engine_env(EngineConfig(model_path="/m"), environ={name: "true"}) == {}  # the user's environment wins
    own = EngineConfig(model_path="/m", env=((name, "1"), ("X", "y")))
    assert engine_env(own, environ={}) == {name: "1", "X": "y"}  # and so does the engine config's
    assert engine_env(EngineConfig(model_path="/m", backend="local"), environ={}) == {}
