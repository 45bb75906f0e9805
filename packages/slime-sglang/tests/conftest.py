"""Shared fixtures: real local-server subprocesses on 127.0.0.1 built on the testkit's tiny Qwen3."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from slime.sglang.engine_process import EngineProcess
from slime.sglang.server_args import EngineConfig


@pytest.fixture(scope="session")
def local_engine(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """One local server for tests that do not change its weights or pause it."""
    engine = EngineProcess(
        EngineConfig(
            model_path=str(tiny_qwen3_dir),
            backend="local",
            startup_timeout_s=180,
            log_dir=str(tmp_path_factory.mktemp("engine_logs")),
        ),  # fmt: skip
    )
    engine.launch()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def reference_model(tiny_qwen3_dir: Path) -> torch.nn.Module:
    """The same checkpoint in this process, for teacher-forced log-probs."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def teacher_forced(reference_model: torch.nn.Module) -> Callable[..., list[float]]:
    """`teacher_forced(prompt, output, temperature=1.0)`: reference log-probs from the tiny model."""
    return functools.partial(teacher_forced_logprobs, reference_model)


@pytest.fixture(scope="session")
def make_prompts() -> Callable[..., list[list[int]]]:
    """`make_prompts(count, seed=0)`: token-id prompts of varied lengths."""
    return random_prompts


def teacher_forced_logprobs(
    model: torch.nn.Module, prompt: list[int], output: list[int], temperature: float = 1.0
) -> list[float]:
    """log_softmax(logits / T) of each output token given everything before it, in one forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + output])).logits[0].double()
    scale = temperature if temperature > 1e-6 else 1.0
    logprobs = torch.log_softmax(logits / scale, dim=-1)[len(prompt) - 1 : -1]
    return logprobs.gather(-1, torch.tensor(output)[:, None])[:, 0].tolist()


def random_prompts(count: int, *, seed: int = 0, low: int = 2, high: int = 24) -> list[list[int]]:
    """Token-id prompts of varied lengths that avoid the tokenizer's special ids (0..3)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high, (count,), generator=g).tolist()
    return [torch.randint(4, 250, (n,), generator=g).tolist() for n in lengths]
