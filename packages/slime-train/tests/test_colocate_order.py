"""The colocated loop's memory choreography, with recording hosts (the order a GPU needs, checked on CPU).

On an H100 (issue #13) two orders ran out of memory: engines resuming everything while the trainer still held its
state, and a first rollout generated beside a trainer that had never offloaded. This pins slime's order."""

from __future__ import annotations

from typing import Any

from slime.train.handles import Group, LocalHandle
from slime.train.loop import KV_TAGS, WEIGHT_TAGS, Job, run_sync
from slime.train.metrics import FanOut
from slime.train.run_config import LoopConfig


class _Rollout:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def engine_urls(self) -> list[str]:
        return ["http://engine"]

    def weights_incoming(self, incoming: bool) -> None:
        pass

    def generate(self, rollout_id: int) -> tuple[Any, dict[str, float]]:
        self.log.append("generate")
        return f"batch-{rollout_id}", {}

    def release_memory(self) -> None:
        self.log.append("engines release")

    def resume_memory(self, tags: tuple[str, ...] | None = None) -> None:
        self.log.append(f"engines resume {'+'.join(tags or ('all',))}")


class _Trainer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def update_weights(self, urls: list[str], version: int) -> dict[str, float]:
        self.log.append("push")
        return {}

    def train(self, rollout_id: int, batch: Any) -> dict[str, float]:
        self.log.append("train")
        return {"train/loss": 0.0}

    def offload(self) -> dict[str, float]:
        self.log.append("trainer offload")
        return {}

    def onload(self) -> dict[str, float]:
        self.log.append("trainer onload")
        return {}


def test_colocated_steps_switch_memory_in_slimes_order() -> None:
    log: list[str] = []
    job = Job(
        loop=LoopConfig(num_rollout=2, offload_rollout=True, offload_train=True),
        rollout=LocalHandle(_Rollout(log)),
        trainer=Group([LocalHandle(_Trainer(log))]),
        metrics=FanOut([]),
        start_rollout_id=0,
        num_rollout=2,
    )
    run_sync(job)
    weights, kv = "+".join(WEIGHT_TAGS), "+".join(KV_TAGS)
    step = ["generate", "engines release", "trainer onload", "train",
            f"engines resume {weights}", "push", "trainer offload", f"engines resume {kv}"]  # fmt: skip
    assert log == ["push", "trainer offload", *step, *step]
    assert "kv_cache" in KV_TAGS and "weights" in WEIGHT_TAGS and not set(KV_TAGS) & set(WEIGHT_TAGS)
