"""Shared fixtures: real local-server subprocesses on 127.0.0.1 built on the testkit's tiny Qwen3."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.engine_process import EngineProcess
from slime.sglang.router import RouterConfig
from slime.sglang.server_args import EngineConfig


@pytest.fixture(scope="session")
def group(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineGroup]:
    """The real sglang-router (round robin, 1 s health checks) in front of two local servers.

    Shared by every test of one pytest worker; tests that pause, release or reload weights restore them.
    """
    logs = str(tmp_path_factory.mktemp("engine_logs"))
    config = EngineGroupConfig(
        engine=EngineConfig(model_path=str(tiny_qwen3_dir), backend="local", startup_timeout_s=300, log_dir=logs),
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
def reference_model(tiny_qwen3_dir: Path) -> torch.nn.Module:
    """The same checkpoint in this process, for teacher-forced log-probs."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir, dtype=torch.float32).eval()


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
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()
    logprobs = torch.log_softmax(logits / (temperature if temperature > 1e-6 else 1.0), dim=-1)
    out = []
    for row, (prompt, output) in enumerate(pairs):
        positions = torch.arange(len(prompt) - 1, len(prompt) + len(output) - 1)
        out.append(logprobs[row, positions, torch.tensor(output)].tolist())
    return out


def random_prompts(count: int, *, seed: int = 0, low: int = 2, high: int = 24) -> list[list[int]]:
    """Token-id prompts of varied lengths that avoid the tokenizer's special ids (0..3)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high, (count,), generator=g).tolist()
    return [torch.randint(4, 250, (n,), generator=g).tolist() for n in lengths]
