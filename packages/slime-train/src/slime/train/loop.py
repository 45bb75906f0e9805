"""The two training loops, in slime's order, as thin drivers of the rollout host and the trainer group.

Synchronous (`train.py`): rollout -> train -> save -> sync weights -> eval, with offload/onload around
each phase when colocated. Asynchronous (`train_async.py`): the rollout of step n+1 is started before
training on step n and its samples may be at most `max_staleness` policy versions old. Both loops only
sequence calls; the work lives in the hosts. With `--use-fault-tolerance` the engine group is healed before
every weight push, and a rollout or push that fails on an engine, router or reward server is rerun after
healing and re-pushing the current weights (`fault_tolerance.rerun_on_failure`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from slime.train.fault_tolerance import rerun_on_failure
from slime.train.handles import Group, LocalHandle, Pending, RayHandle
from slime.train.metrics import FanOut
from slime.train.progress import RunProgress
from slime.train.run_config import LoopConfig
from slime.train.run_state import save_run_state


@dataclasses.dataclass(kw_only=True)
class Job:
    """What a loop drives."""

    loop: LoopConfig
    rollout: LocalHandle | RayHandle
    trainer: Group
    metrics: FanOut
    start_rollout_id: int
    num_rollout: int
    progress: RunProgress = dataclasses.field(default_factory=lambda: RunProgress("never", first=0, total=0))
    weight_version: int = -1
    """The weight version the engines hold (set by every push)."""


def _call(handle: LocalHandle | RayHandle, method: str, *args: Any) -> Any:
    return handle.submit(method, *args).result()


def _push_weights(job: Job, version: int) -> None:
    urls = _call(job.rollout, "engine_urls")
    _call(job.rollout, "weights_incoming", True)
    try:
        job.trainer.call("update_weights", urls, version)
    finally:
        _call(job.rollout, "weights_incoming", False)


def _sync_weights(job: Job, version: int) -> float:
    started = time.perf_counter()
    job.progress.phase(version - 1, "syncing weights")
    if job.loop.use_fault_tolerance:
        heal = lambda: _call(job.rollout, "heal")  # noqa: E731
        healed = heal()  # slime: dead engines are restarted before the next weight update, which then reaches them
        if healed.get("added") or version != job.weight_version:  # a re-push only matters to replacements
            push = lambda: _push_weights(job, version)  # noqa: E731
            rerun_on_failure(push, push, heal, what=f"the weight update to version {version}")
    else:
        _push_weights(job, version)
    job.weight_version = version
    return time.perf_counter() - started


def _generate(job: Job, rollout_id: int, pending: Pending | None = None) -> Any:
    """Wait for (or start) the rollout; with --use-fault-tolerance rerun it after healing and re-pushing weights."""
    pending = pending or job.rollout.submit("generate", rollout_id)
    job.progress.phase(rollout_id, "generating")
    if not job.loop.use_fault_tolerance:
        return job.progress.wait(pending, job.rollout)
    (batch, metrics), reruns = rerun_on_failure(
        lambda: job.progress.wait(pending, job.rollout),
        lambda: _call(job.rollout, "generate", rollout_id),
        lambda: _sync_weights(job, job.weight_version),
        what=f"rollout {rollout_id}",
    )
    return batch, {**metrics, "rollout/fault_reruns": metrics.get("rollout/fault_reruns", 0.0) + reruns}


def _should_save(loop: LoopConfig, rollout_id: int, num_rollout: int) -> bool:
    if not loop.save:
        return False
    last = rollout_id + 1 == num_rollout
    return last or (loop.save_interval is not None and (rollout_id + 1) % loop.save_interval == 0)


def _save(job: Job, rollout_id: int) -> None:
    job.trainer.call("save", rollout_id)
    state = _call(job.rollout, "state_dict")
    save_run_state(job.loop.save, rollout_id, {"data_source": state})


def _maybe_eval(job: Job, rollout_id: int, *, before_training: bool = False) -> None:
    loop = job.loop
    if loop.eval_interval is None:
        return
    due = (rollout_id + 1) % loop.eval_interval == 0 or rollout_id + 1 == job.num_rollout
    if before_training:
        due = rollout_id == 0 and not loop.skip_eval_before_train
    if due:
        job.progress.phase(rollout_id, "evaluating")
        job.metrics.log(_call(job.rollout, "evaluate", rollout_id), rollout_id)


def _timed(timings: dict[str, float], key: str, call: Any, *args: Any) -> None:
    started = time.perf_counter()
    call(*args)
    timings[key] = time.perf_counter() - started


def _trainer_switch(job: Job, method: str, timings: dict[str, float], details: dict[str, float]) -> None:
    """Offload or onload the trainer, timed as `perf/<method>_train_time`; rank 0's own figures (bytes, where the
    time went) go to `details`, which the step logs but does not count as switching time (they are inside it)."""
    started = time.perf_counter()
    figures = job.trainer.call(method)
    timings[f"perf/{method}_train_time"] = time.perf_counter() - started
    details.update({k: v for k, v in figures[0].items() if k != f"perf/{method}_time"})


def _switch_to_training(job: Job, timings: dict[str, float], details: dict[str, float]) -> None:
    """Colocate: engines release their memory, the trainer takes the accelerator back (each timed)."""
    if job.loop.offload_rollout:
        _timed(timings, "perf/release_rollout_time", _call, job.rollout, "release_memory")
    if job.loop.offload_train:
        _trainer_switch(job, "onload", timings, details)


WEIGHT_TAGS = ("weights",)
KV_TAGS = ("kv_cache", "cuda_graph")
"""SGLang's memory tags. Engines take back their weights' memory first (small), receive the weights, and only after
the trainer has offloaded take the KV cache and CUDA graphs (large), as slime does: resuming everything while the
trainer still holds its state and its step's cached activations ran the GPU out of memory (seen on an H100: fsdp,
Qwen3-0.6B shape, 16k-token micro-batches, --sglang-mem-fraction-static 0.4, at the third resume)."""


def _switch_to_rollout_after_sync(
    job: Job, version: int, timings: dict[str, float], details: dict[str, float]
) -> float:
    """Colocate: engines take their weights' memory back, weights are pushed, the trainer offloads, engines take
    their KV cache back; returns the sync time."""
    if job.loop.offload_rollout:
        _timed(timings, "perf/resume_rollout_time", _call, job.rollout, "resume_memory", WEIGHT_TAGS)
    sync_time = _sync_weights(job, version)
    if job.loop.offload_train:
        _trainer_switch(job, "offload", timings, details)
    if job.loop.offload_rollout:
        _timed(timings, "perf/resume_rollout_kv_time", _call, job.rollout, "resume_memory", KV_TAGS)
    return sync_time


def _switch_metrics(switches: dict[str, float], step_time: float) -> dict[str, float]:
    """The colocate switches timed this step, their sum and its share of the step (#13's goal: <= 10 %)."""
    if not switches:
        return {}
    total = sum(switches.values())
    return {**switches, "perf/switch_time": total, "perf/switch_fraction": total / step_time if step_time else 0.0}


def _train_one(
    job: Job, rollout_id: int, batch: Any, switches: dict[str, float], details: dict[str, float]
) -> dict[str, float]:
    loop = job.loop
    timings: dict[str, float] = {}
    _switch_to_training(job, switches, details)
    started = time.perf_counter()
    job.progress.phase(rollout_id, "training")
    results = job.trainer.call("train", rollout_id, batch)
    timings["perf/train_time"] = time.perf_counter() - started
    if _should_save(loop, rollout_id, job.num_rollout):
        t0 = time.perf_counter()
        job.progress.phase(rollout_id, "saving")
        _save(job, rollout_id)
        timings["perf/save_time"] = time.perf_counter() - t0
    return {**results[0], **timings}


def run_sync(job: Job) -> FanOut:
    """slime's `train.py` loop; returns the metrics history."""
    job.metrics.log({"perf/update_weights_time": _sync_weights(job, job.start_rollout_id)}, job.start_rollout_id)
    if job.loop.offload_train:
        job.trainer.call("offload")  # the first rollout, like every later one, runs with the trainer offloaded
    for rollout_id in range(job.start_rollout_id, job.num_rollout):
        step_started = time.perf_counter()
        _maybe_eval(job, rollout_id, before_training=True)
        batch, rollout_metrics = _generate(job, rollout_id)
        rollout_time = time.perf_counter() - step_started
        switches: dict[str, float] = {}
        details: dict[str, float] = {}  # the trainer's own offload/onload figures, inside the switches' times
        train_metrics = _train_one(job, rollout_id, batch, switches, details)
        sync_time = _switch_to_rollout_after_sync(job, rollout_id + 1, switches, details)
        _maybe_eval(job, rollout_id)
        step_time = time.perf_counter() - step_started
        job.metrics.log(
            {**rollout_metrics, **train_metrics, **details, **_switch_metrics(switches, step_time),
             "perf/rollout_time": rollout_time, "perf/update_weights_time": sync_time, "perf/step_time": step_time},
            rollout_id,
        )  # fmt: skip
        job.progress.trained(rollout_id)
    return job.metrics


def run_async(job: Job) -> FanOut:
    """slime's `train_async.py` loop: generation of step n+1 overlaps training on step n.

    Weights are pushed every `--update-weights-interval` rollouts, after waiting for the in-flight
    generation, so a sample is at most `update_weights_interval` policy versions stale (one by default).
    """
    loop = job.loop
    interval = max(1, loop.update_weights_interval)
    job.metrics.log({"perf/update_weights_time": _sync_weights(job, job.start_rollout_id)}, job.start_rollout_id)
    pending = job.rollout.submit("generate", job.start_rollout_id)
    for rollout_id in range(job.start_rollout_id, job.num_rollout):
        step_started = time.perf_counter()
        batch, rollout_metrics = _generate(job, rollout_id, pending)
        wait_time = time.perf_counter() - step_started
        if rollout_id + 1 < job.num_rollout:
            pending = job.rollout.submit("generate", rollout_id + 1)
        switches: dict[str, float] = {}
        details: dict[str, float] = {}
        train_metrics = {**_train_one(job, rollout_id, batch, switches, details), **switches, **details}
        sync_time = 0.0
        if (rollout_id + 1) % interval == 0:
            if rollout_id + 1 < job.num_rollout:
                # The next batch was generated with the old weights; collect it before swapping them.
                finished = _generate(job, rollout_id + 1, pending)
                pending = _Done(finished)
            sync_time = _sync_weights(job, rollout_id + 1)
        _maybe_eval(job, rollout_id)
        job.metrics.log(
            {**rollout_metrics, **train_metrics, "perf/rollout_wait_time": wait_time,
             "perf/update_weights_time": sync_time, "perf/step_time": time.perf_counter() - step_started},
            rollout_id,
        )  # fmt: skip
        job.progress.trained(rollout_id)
    return job.metrics


class _Done:
    """A pending call that already finished."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value
