"""Fixtures of the whole-system reliability suite (issue #12).

`chaos.py` (the fault-injecting plugin and the reward server) is importable as `slime_train_reliability_chaos`,
a name unique across the workspace's test trees. `recorder` wraps the trainer host so a test sees exactly what
reached training and which weights went to which engines.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_NAME = "slime_train_reliability_chaos"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("chaos.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)


class Recorder:
    """What the trainer host saw: trained batches and weight pushes, in order."""

    def __init__(self) -> None:
        self.trained: list[tuple[int, list[tuple[int, str | None, tuple[int, ...]]]]] = []
        self.pushes: list[tuple[tuple[str, ...], int]] = []

    def samples(self, rollout_id: int) -> list[tuple[int, str | None, tuple[int, ...]]]:
        """(index, weight_version, tokens) of every sample trained on in `rollout_id` (last time it was trained)."""
        return [batch for rid, batch in self.trained if rid == rollout_id][-1]


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    """Record `TrainerHost.train` batches and `TrainerHost.update_weights` pushes (in-process jobs, `--no-ray`)."""
    from slime.train.trainer_host import TrainerHost

    record = Recorder()
    train, update = TrainerHost.train, TrainerHost.update_weights

    def recording_train(self, rollout_id, batch):
        record.trained.append((rollout_id, [(s.index, s.weight_version, s.tokens) for s in batch.samples]))
        return train(self, rollout_id, batch)

    def recording_update(self, engine_urls, version):
        record.pushes.append((tuple(engine_urls), version))
        return update(self, engine_urls, version)

    monkeypatch.setattr(TrainerHost, "train", recording_train)
    monkeypatch.setattr(TrainerHost, "update_weights", recording_update)
    return record
