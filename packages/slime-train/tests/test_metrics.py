"""Metrics sinks: stdout line, JSON lines (NaN-safe), TensorBoard event files, wandb offline, fan-out history."""

from __future__ import annotations

import io
import json
import math

from slime.train.metrics import FanOut, JsonlSink, StdoutSink, TensorBoardSink, WandbSink
from slime.train.plot import plot_curve


def test_stdout_puts_headline_first():
    stream = io.StringIO()
    StdoutSink(stream).log({"b": 1.0, "rollout/reward_mean": 0.5, "train/loss": float("nan")}, 3)
    line = stream.getvalue()
    assert line.startswith("[step 3] rollout/reward_mean=0.5 train/loss=nan b=1")


def test_jsonl_is_valid_json_even_with_nan(tmp_path):
    sink = JsonlSink(tmp_path / "m" / "metrics.jsonl")
    sink.log({"x": 1.5, "y": math.inf}, 0)
    sink.log({"x": 2.5}, 1)
    sink.close()
    rows = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 0, "x": 1.5, "y": "inf"}, {"step": 1, "x": 2.5}]


def test_tensorboard_writes_event_files(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    sink.log({"rollout/reward_mean": 0.25}, 0)
    sink.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("rollout/reward_mean")] == [0.25]


def test_wandb_offline_needs_no_network_and_drops_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = WandbSink(
        project="p", group=None, mode="offline", directory=str(tmp_path), config={"lr": 1.0, "wandb_key": "secret-123"}
    )
    sink.log({"train/loss": 0.1}, 0)
    sink.close()
    texts = "".join(
        p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file() and p.suffix in {".yaml", ".json"}
    )
    assert "secret-123" not in texts


def test_fanout_history_and_plot(tmp_path):
    fan = FanOut([])
    for step, value in enumerate([0.1, 0.4, 0.9]):
        fan.log({"rollout/reward_mean": value}, step)
    assert fan.series("rollout/reward_mean") == [(0, 0.1), (1, 0.4), (2, 0.9)]
    png = plot_curve(fan.series("rollout/reward_mean"), tmp_path / "curve.png", title="t", ylabel="r")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
