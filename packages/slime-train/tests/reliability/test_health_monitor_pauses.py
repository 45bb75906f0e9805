"""The health monitor stays off while ANY reason holds: engines released for training, or receiving weights
(stock SGLang pauses generation during an update, so a probe then would kill a healthy engine)."""

from __future__ import annotations

import time

from slime.train.fault_tolerance import HealthMonitor


def test_probing_resumes_only_when_every_reason_is_over():
    monitor = HealthMonitor(None, interval_s=1.0, timeout_s=1.0, first_wait_s=5.0)  # type: ignore[arg-type]
    assert not monitor.paused
    monitor.pause("memory")
    monitor.pause("weights")
    monitor.resume("memory")
    assert monitor.paused  # the weight push still holds it
    monitor.resume("weights")
    assert not monitor.paused
    # ... and the grace period restarts, so the first probe waits for the engines to settle.
    assert monitor._resume_at > time.monotonic() + 4.0
    monitor.resume("weights")  # resuming twice is harmless
    assert not monitor.paused
