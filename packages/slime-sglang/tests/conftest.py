"""Shared fixtures: the real sglang-router and engine subprocesses on 127.0.0.1.

By default the engines are local servers on the testkit's tiny Qwen3 (CPU). The GPU recipe
(`ci/gpu/sglang/device.sh tests`) runs the same client tests against stock SGLang by setting
`SLIME_TEST_ENGINE=sglang`, `SLIME_TEST_MODEL=<HF folder>`, `SLIME_TEST_SERVER_ARGS="<launch_server flags>"`
and `SLIME_TEST_LOGPROB_ATOL` (bf16 kernels are not bit-exact with the fp32 reference). Tests marked
`local_only` exercise the local server itself and are skipped then.
"""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.engine_process import EngineProcess
from slime.sglang.router import RouterConfig
from slime.sglang.server_args import EngineConfig

ENGINE = os.environ.get("SLIME_TEST_ENGINE", "local")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_only: tests of the local server itself (skipped against real SGLang)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENGINE == "local":
        return
    skip = pytest.mark.skip(reason=f"tests the local server; SLIME_TEST_ENGINE={ENGINE}")
    for item in items:
        if item.get_closest_marker("local_only") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def model_dir(request: pytest.FixtureRequest) -> Path:
    """The checkpoint the engines serve: SLIME_TEST_MODEL, else the testkit's tiny Qwen3."""
    configured = os.environ.get("SLIME_TEST_MODEL")
    return Path(configured) if configured else request.getfixturevalue("tiny_qwen3_dir")


@pytest.fixture(scope="session")
def logprob_atol() -> float:
    """How close engine log-probs must be to teacher forcing (1e-5: fp32 local servers)."""
    return float(os.environ.get("SLIME_TEST_LOGPROB_ATOL", "1e-5"))


@pytest.fixture(scope="session")
def engine_config(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EngineConfig:
    server_args = tuple(shlex.split(os.environ.get("SLIME_TEST_SERVER_ARGS", "")))
    logs = str(tmp_path_factory.mktemp("engine_logs"))
    return EngineConfig(model_path=str(model_dir), backend="sglang" if ENGINE == "sglang" else "local",
                        startup_timeout_s=600, log_dir=logs, server_args=server_args)  # fmt: skip


@pytest.fixture(scope="session")
def group(engine_config: EngineConfig) -> Iterator[EngineGroup]:
    """The real sglang-router (round robin, 1 s health checks) in front of two engines.

    Shared by every test of one pytest worker; tests that pause, release or reload weights restore them.
    """
    logs = engine_config.log_dir
    config = EngineGroupConfig(
        engine=engine_config,
        num_engines=2,
        router=RouterConfig(policy="round_robin", health_check_interval_secs=1, log_dir=logs),
    )
    with EngineGroup(config) as started:
        yield started


@pytest.fixture(scope="session")
def local_engine(group: EngineGroup) -> EngineProcess:
    """One engine of the group, addressed directly (no router)."""
    return group.engines[0]


@pytest.fixture(scope="session")
def reference_model(model_dir: Path) -> torch.nn.Module:
    """The same checkpoint in this process (fp32; on the GPU when there is one), for teacher-forced log-probs."""
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()


@pytest.fixture(scope="session")
def teacher_forced(reference_model: torch.nn.Module) -> Callable[..., list[float]]:
    """`teacher_forced(prompt, output, temperature=1.0)`: reference log-probs from the tiny model."""
    return lambda prompt, output, temperature=1.0: teacher_forced_batch(
        reference_model, [(prompt, output)], temperature
    )[0]


@pytest.fixture(scope="session")
def teacher_forced_many(reference_model: torch.nn.Module) -> Callable[..., list[list[float]]]:
    """`teacher_forced_many([(prompt, output), ...], temperature=1.0)`: one batched forward for many pairs."""
    return functools.partial(teacher_forced_batch, reference_model)


@pytest.fixture(scope="session")
def teacher_forcing() -> Callable[..., list[list[float]]]:
    """`teacher_forcing(model, [(prompt, output), ...], temperature=1.0)` for any model."""
    return teacher_forced_batch


@pytest.fixture(scope="session")
def make_prompts() -> Callable[..., list[list[int]]]:
    """`make_prompts(count, seed=0)`: token-id prompts of varied lengths."""
    return random_prompts


def teacher_forced_batch(
    model: torch.nn.Module, pairs: list[tuple[list[int], list[int]]], temperature: float = 1.0
) -> list[list[float]]:
    """log_softmax(logits / T) of each output token given everything before it.

    One right-padded forward: with causal attention, padding after a sequence cannot change its positions.
    """
    width = max(len(p) + len(o) for p, o in pairs)
    ids = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (prompt, output) in enumerate(pairs):
        ids[row, : len(prompt) + len(output)] = torch.tensor(prompt + output)
    scale = temperature if temperature > 1e-6 else 1.0
    out = []
    with torch.no_grad():
        for start in range(0, len(pairs), 32):  # chunks: a 151k vocab makes full-batch logits large on a GPU
            logits = model(input_ids=ids[start : start + 32].to(model.device)).logits
            logprobs = torch.log_softmax(logits.double() / scale, dim=-1)
            for row, (prompt, output) in enumerate(pairs[start : start + 32]):
                positions = torch.arange(len(prompt) - 1, len(prompt) + len(output) - 1, device=logits.device)
                out.append(logprobs[row, positions, torch.tensor(output, device=logits.device)].tolist())
    return out


def random_prompts(count: int, *, seed: int = 0, low: int = 2, high: int = 24) -> list[list[int]]:
    """Token-id prompts of varied lengths that avoid the tokenizer's special ids (0..3)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high, (count,), generator=g).tolist()
    return [torch.randint(4, 250, (n,), generator=g).tolist() for n in lengths]
