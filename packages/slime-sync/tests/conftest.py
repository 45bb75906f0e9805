"""Fixtures: stand-in engine processes (`engine_worker.py`) and a mixed set of weights to sync."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from slime.sync import tensor_checksum
from slime.types import WeightSyncError

HERE = Path(__file__).resolve().parent
REPLY_TIMEOUT_S = 120.0  # generous: two cores shared with other test workers importing torch


class EngineProcess:
    """One `engine_worker.py` subprocess driven over JSON lines."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "engine_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                self._replies.put(json.loads(line[3:]))

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        return self._replies.get(timeout=REPLY_TIMEOUT_S)

    def call(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.recv()

    def new(self, transport: str, **args: Any) -> None:
        assert self.call(op="new", transport=transport, args=args)["ok"]

    def weights(self, transport: str) -> dict[str, list[Any]]:
        return self.call(op="weights", transport=transport)["weights"]

    def deliver(self, transport: str, peer: str | None = "127.0.0.1") -> Callable[[dict[str, Any]], int]:
        """What an engine client does: post the payload, raise on an error reply, return the version."""

        def deliver(payload: dict[str, Any]) -> int:
            reply = self.call(op="apply", transport=transport, payload=payload, peer=peer)
            if not reply["ok"]:
                raise WeightSyncError(reply["error"])
            return reply["version"]

        return deliver

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send(op="exit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class EnginePool:
    """Engine processes started on first use (importing torch is most of a test's time on 2 cores)."""

    def __init__(self) -> None:
        self._procs: dict[int, EngineProcess] = {}

    def __getitem__(self, index: int) -> EngineProcess:
        if index not in self._procs:
            self._procs[index] = EngineProcess()
        return self._procs[index]

    def start(self, count: int) -> list[EngineProcess]:
        """Start engines 0..count-1 together, so their imports overlap."""
        return [self[i] for i in range(count)]

    def close(self) -> None:
        for proc in self._procs.values():
            proc.close()


@pytest.fixture(scope="session")
def engines() -> Iterator[EnginePool]:
    """Engine processes shared by the tests of one xdist worker (each test makes its own receivers)."""
    pool = EnginePool()
    yield pool
    pool.close()


def make_weights(seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A bf16/fp32 mix with an empty, a single-element, a 0-d and a large (multi-bucket) tensor."""
    g = torch.Generator().manual_seed(seed)
    return {
        "model.embed_tokens.weight": (torch.randn(64, 48, generator=g) * scale).bfloat16(),
        "model.layers.0.self_attn.q_proj.weight": (torch.randn(48, 48, generator=g) * scale).bfloat16(),
        "model.layers.0.input_layernorm.weight": torch.randn(48, generator=g) * scale,
        "model.layers.0.mlp.big.weight": (torch.randn(96, 80, generator=g) * scale).bfloat16(),  # > a 4 KiB bucket
        "model.layers.0.empty": torch.empty(0, 3),
        "model.layers.0.single": torch.randn(1, generator=g).bfloat16(),
        "model.scalar": torch.tensor(seed + 0.5),
        "model.norm.weight": torch.randn(48, generator=g) * scale,
    }


def expected(weights: dict[str, torch.Tensor]) -> dict[str, list[Any]]:
    """What `EngineProcess.weights` reports for a bit-exact copy of `weights`."""
    return {n: [tensor_checksum(t), list(t.shape), str(t.dtype)] for n, t in weights.items()}


@pytest.fixture
def weights() -> dict[str, torch.Tensor]:
    return make_weights(0)


@pytest.fixture
def weight_factory() -> Callable[..., dict[str, torch.Tensor]]:
    return make_weights


@pytest.fixture
def expect() -> Callable[[dict[str, torch.Tensor]], dict[str, list[Any]]]:
    return expected
