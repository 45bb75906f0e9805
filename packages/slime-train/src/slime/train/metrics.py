"""Metrics sinks (stdout, JSON lines, TensorBoard, wandb) behind `slime.types.MetricsSink`, and a fan-out.

Metric names follow slime's groups (`rollout/*`, `train/*`, `perf/*`, `eval/*`); the step of every group
is the rollout id. Sinks never raise on NaN or on a missing optional package after construction: a sink
that cannot start fails at construction with the fix in the message. Secrets (wandb keys) are never
written by any sink.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from slime.types import ConfigError, MetricsSink


def _fmt(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


class StdoutSink:
    """One compact line per step with the most useful keys first."""

    HEADLINE = ("rollout/reward_mean", "train/loss", "train/grad_norm", "perf/step_time")

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        """None: whatever `sys.stdout` is at each line (progress bars redirect it to print above themselves)."""

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Print `step` and the metrics (headline keys first)."""
        keys = [k for k in self.HEADLINE if k in metrics] + sorted(k for k in metrics if k not in self.HEADLINE)
        body = " ".join(f"{k}={_fmt(float(metrics[k]))}" for k in keys)
        print(f"[step {step}] {body}", file=self._stream or sys.stdout, flush=True)

    def close(self) -> None:
        """Flush the stream."""
        (self._stream or sys.stdout).flush()


class JsonlSink:
    """Append `{"step": s, ...metrics}` lines to a file (machine-readable history, survives restarts)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._path.open("a", encoding="utf-8")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Write one JSON line; NaN/inf are written as strings so the file stays valid JSON."""
        row: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else str(value)
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class TensorBoardSink:
    """Scalars to TensorBoard event files under `log_dir`."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only when the sink is asked for
        except ImportError as exc:  # pragma: no cover - tensorboard is a declared dependency
            raise ConfigError(f"--use-tensorboard needs the tensorboard package ({exc}).") from exc
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Add every metric as a scalar at `step`."""
        for key, value in metrics.items():
            self._writer.add_scalar(key, float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        """Close the writer."""
        self._writer.close()


class WandbSink:
    """wandb run (online, offline or disabled); offline mode needs no network."""

    def __init__(
        self,
        *,
        project: str | None,
        group: str | None,
        mode: str | None,
        directory: str | None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        import wandb  # heavy import, only when the sink is asked for

        self._wandb = wandb
        safe_config = {k: v for k, v in (config or {}).items() if "key" not in k and "token" not in k}
        self._run = wandb.init(
            project=project or "slime",
            group=group,
            mode=mode or "offline",
            dir=directory,
            config=safe_config,
            reinit=True,
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log the metrics dict at `step`."""
        self._run.log({k: float(v) for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        """Finish the run."""
        self._run.finish()


class FanOut:
    """Send every log call to several sinks; keep the history for plots and summaries."""

    def __init__(self, sinks: Sequence[MetricsSink]) -> None:
        self._sinks = list(sinks)
        self.history: list[tuple[int, dict[str, float]]] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Fan the metrics out and remember them."""
        clean = {k: float(v) for k, v in metrics.items()}
        self.history.append((step, clean))
        for sink in self._sinks:
            sink.log(clean, step)

    def series(self, key: str) -> list[tuple[int, float]]:
        """`(step, value)` pairs of one metric, in logging order."""
        return [(step, m[key]) for step, m in self.history if key in m]

    def close(self) -> None:
        """Close every sink."""
        for sink in self._sinks:
            sink.close()
