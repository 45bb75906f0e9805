"""The default training rollout: fan-out, dynamic sampling, early stop, abort, partial-rollout requeue.

Flow of `generate_rollout_async` (slime's `generate_rollout_async`, driven by slime.buffer's
`DynamicSamplingPlanner`): whenever kept + in-flight groups cannot reach `--rollout-batch-size`, pull
`--over-sampling-batch-size` groups from the data buffer and start one `GroupRun` task each; as groups
finish, the planner filters them (`--dynamic-sampling-filter-path`; groups holding a FAILED sample are
dropped, groups that came back ABORTED are set aside) until enough were kept. Then everything still in
flight is aborted on every engine (see `abort`), and with `--partial-rollout` every group that was neither
kept nor dropped (aborted partial groups and finished surplus) goes back into the buffer tagged with
`metadata["start_rollout_id"]`; without it they are discarded. The result is exactly `rollout_batch_size`
groups sorted by index, every sample finished and scored. Metrics ride along on the returned list.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from slime.buffer.dynamic_sampling import DynamicSamplingPlanner
from slime.buffer.filters import DynamicFilterOutput
from slime.sglang.rollout.abort import abort_in_flight, cancel_runs
from slime.sglang.rollout.context import RolloutContext, make_context
from slime.sglang.rollout.functions import RolloutFunctions
from slime.sglang.rollout.group_run import GroupRun, flatten
from slime.sglang.rollout.metrics import training_metrics
from slime.sglang.rollout.progress import ROLLOUT_PROGRESS
from slime.types import ConfigError, ContractError, Sample, Status

logger = logging.getLogger(__name__)


class RolloutGroups(list):  # type: ignore[type-arg]  # list[list[Sample]] with metrics attached
    """`list[list[Sample]]` for training, plus `metrics` (`rollout/*`) for the orchestrator to log."""

    def __init__(self, groups: list[list[Sample]], metrics: dict[str, float]) -> None:
        super().__init__(groups)
        self.metrics = metrics


def _group_filter(user_filter: Callable[..., Any] | None) -> Callable[..., Any]:
    """The planner's filter: drop groups holding a FAILED sample, then ask the user's filter."""

    def group_filter(args: Any, samples: list[Sample], **kwargs: Any) -> Any:
        if any(s.status is Status.FAILED for s in samples):
            return DynamicFilterOutput(keep=False, reason="failed_sample")
        return True if user_filter is None else user_filter(args, samples, **kwargs)

    group_filter.__name__ = getattr(user_filter, "__name__", "keep_all")
    return group_filter


def _get_samples(data_buffer: Any, num_groups: int, rollout_id: int) -> list[list[Sample]]:
    fn = data_buffer.get_samples
    try:
        takes_id = "rollout_id" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_id = False
    groups = fn(num_groups, rollout_id=rollout_id) if takes_id else fn(num_groups)
    if len(groups) != num_groups:
        raise ContractError(f"data buffer get_samples({num_groups}) returned {len(groups)} groups.")
    return [list(g) for g in groups]


def check_rollout_args(args: Any) -> None:
    """Start-up checks of the flags the default rollout reads (plugins are checked by RolloutFunctions)."""
    for name in ("rollout_batch_size", "n_samples_per_prompt"):
        value = getattr(args, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} is {value!r}; it must be an int >= 1.")


def _is_aborted(samples: list[Sample]) -> bool:
    return any(s.status is Status.ABORTED for s in samples)


class _Loop:
    """One rollout's task bookkeeping around the planner."""

    def __init__(self, ctx: RolloutContext, planner: DynamicSamplingPlanner, data_buffer: Any) -> None:
        self.ctx, self.planner, self.data_buffer = ctx, planner, data_buffer
        self.tasks: dict[asyncio.Task[Any], tuple[int, GroupRun]] = {}
        self.resumed = 0

    def submit(self) -> None:
        num = self.planner.num_to_submit()
        if not num:
            return
        for group in _get_samples(self.data_buffer, num, self.ctx.rollout_id):
            self.resumed += sum(1 for s in group if s.response_length > 0 or s.status.is_finished)
            run = GroupRun(self.ctx, group)
            ticket = self.planner.submit(group)
            self.tasks[asyncio.ensure_future(run.run())] = (ticket, run)

    def record(self, task: asyncio.Task[Any]) -> None:
        ticket, run = self.tasks.pop(task)
        samples = run.samples
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        if task.cancelled() or _is_aborted(samples):
            self.planner.record_aborted(ticket, samples)
        else:
            self.planner.record(ticket, samples)
            ROLLOUT_PROGRESS.group_done(len(samples), self.planner.num_kept)

    async def run(self) -> None:
        while not self.planner.done:
            self.submit()
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self.record(task)

    async def stop(self) -> int:
        """Abort and cancel what is still in flight, then record it; returns abort rounds."""
        rounds = await abort_in_flight(self.ctx, [run for _, run in self.tasks.values()])
        await cancel_runs(self.tasks)
        for task in list(self.tasks):
            ticket, run = self.tasks.pop(task)
            error = None if task.cancelled() else task.exception()
            if error is not None:  # a surplus group failed after the rollout had what it needed: report, go on
                logger.warning("rollout %d: a surplus group failed while aborting: %r", self.ctx.rollout_id, error)
            if error is None and not task.cancelled() and not _is_aborted(run.samples):
                self.planner.record(ticket, run.samples)
            else:
                self.planner.record_aborted(ticket, run.samples)
        return rounds


def _requeue(args: Any, data_buffer: Any, planner: DynamicSamplingPlanner, rollout_id: int) -> tuple[int, int]:
    """Put leftover groups back into the buffer (with --partial-rollout); returns (groups returned, discarded)."""
    leftovers = planner.leftovers()
    if not getattr(args, "partial_rollout", False) or not leftovers:
        return 0, len(leftovers)
    n = args.n_samples_per_prompt
    keep = [g for g in leftovers if len(g) == n]  # a custom generate's fan-out cannot be resumed as a group
    add = data_buffer.add_samples
    takes_id = "rollout_id" in inspect.signature(add).parameters
    add(keep, rollout_id=rollout_id) if takes_id else add(keep)
    if not takes_id:
        for sample in (s for g in keep for s in g):
            sample.metadata.setdefault("start_rollout_id", rollout_id)
    return len(keep), len(leftovers) - len(keep)


def _final_groups(planner: DynamicSamplingPlanner) -> list[list[Sample]]:
    groups = [flatten(g) for g in planner.result()]
    for sample in (s for g in groups for s in g):
        if not sample.status.is_finished or sample.reward is None:
            raise ContractError(
                f"sample {sample.index} would reach training with status {sample.status} and reward "
                f"{sample.reward!r}; every trained sample must be finished and scored."
            )
        sample.validate()
    return groups


async def generate_rollout_async(
    args: Any, rollout_id: int, data_buffer: Any, *, functions: RolloutFunctions | None = None
) -> RolloutGroups:
    """The default rollout on the running event loop (see the module docstring)."""
    check_rollout_args(args)
    ctx = await make_context(args, rollout_id, evaluation=False, functions=functions)
    planner = DynamicSamplingPlanner(
        target_groups=args.rollout_batch_size,
        over_sampling_batch_size=getattr(args, "over_sampling_batch_size", None),
        filter_fn=_group_filter(ctx.functions.dynamic_filter),
        args=args,
    )
    loop = _Loop(ctx, planner, data_buffer)
    ROLLOUT_PROGRESS.start(rollout_id, args.rollout_batch_size)
    try:
        await loop.run()
    except BaseException:
        await abort_in_flight(ctx, [run for _, run in loop.tasks.values()])
        await cancel_runs(loop.tasks)
        raise
    abort_rounds = await loop.stop()
    aborted_samples = sum(1 for g in planner.leftovers() for s in g if s.status is Status.ABORTED)
    returned, discarded = _requeue(args, data_buffer, planner, rollout_id)
    groups = _final_groups(planner)
    # With a reward post-process the rewards are final only after it (the orchestrator runs it): no reward figures.
    with_rewards = not getattr(args, "custom_reward_post_process_path", None)
    metrics = training_metrics(groups, ctx.reward_key, with_rewards=with_rewards)
    metrics.update(planner.metrics())
    metrics.update(
        {
            "rollout/aborted_samples": float(aborted_samples),
            "rollout/abort_rounds": float(abort_rounds),
            "rollout/partial/resumed_samples": float(loop.resumed),
            "rollout/partial/returned_groups": float(returned),
            "rollout/partial/discarded_groups": float(discarded),
        }
    )
    return RolloutGroups(groups, metrics)
