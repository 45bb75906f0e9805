"""`RolloutProgress`: how far the running training rollout of this process is, for progress bars.

The default rollout (`train_rollout.generate_rollout_async`) updates the process-wide `ROLLOUT_PROGRESS` as
groups come back; the orchestrator reads `snapshot()` from another thread (or another process, through its
host) to draw a live bar. A custom `--rollout-function-path` that does not update it leaves the bar without a
total, which is all it means. It records counts only; it never changes what the rollout does.
"""

from __future__ import annotations

import threading


class RolloutProgress:
    """Counters of the current rollout, safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = {"rollout_id": -1, "target_groups": 0, "kept_groups": 0, "finished_samples": 0}

    def start(self, rollout_id: int, target_groups: int) -> None:
        """A rollout began: reset the counters."""
        with self._lock:
            self._state = {"rollout_id": rollout_id, "target_groups": target_groups, "kept_groups": 0,
                           "finished_samples": 0}  # fmt: skip

    def group_done(self, num_samples: int, kept_groups: int) -> None:
        """A group came back with `num_samples` samples; `kept_groups` are kept so far."""
        with self._lock:
            self._state["finished_samples"] += num_samples
            self._state["kept_groups"] = kept_groups

    def snapshot(self) -> dict[str, int]:
        """A copy of the counters: rollout_id, target_groups, kept_groups, finished_samples."""
        with self._lock:
            return dict(self._state)


ROLLOUT_PROGRESS = RolloutProgress()
"""The process's rollout progress (one training rollout runs at a time per rollout host)."""
