"""`DynamicSamplingPlanner`: the over-sampling bookkeeping of DAPO-style dynamic sampling, engine-free.

The rollout loop drives it. It asks `num_to_submit()` how many prompt groups to pull (a batch of
`over_sampling_batch_size` whenever the groups kept plus those in flight can no longer reach the target),
`submit`s each group and gets a ticket, and reports each finished group with `record(ticket, group)`; the
planner runs the dynamic filter and keeps the group while fewer than `target_groups` were kept. Once `done`,
`to_abort()` names the tickets still in flight; the loop aborts them and hands each one back with
`record_aborted`. `result()` is then exactly `target_groups` groups sorted by sample index, and
`leftovers()` holds every submitted group that was neither kept nor dropped (finished surplus and aborted
partial groups) for the partial-rollout buffer. Every submitted group ends in exactly one of kept, dropped,
leftover or in flight: none is lost. The planner never generates, scores or talks to an engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from slime.buffer.filters import DynamicFilterOutput
from slime.types import ConfigError, ContractError, Sample

METRIC_PREFIX = "rollout/dynamic_filter/"


class GroupOutcome(StrEnum):
    """Where a recorded group went."""

    KEPT = "kept"
    DROPPED = "dropped"
    SURPLUS = "surplus"
    ABORTED = "aborted"


def _verdict(raw: Any, filter_name: str) -> DynamicFilterOutput:
    if isinstance(raw, DynamicFilterOutput):
        return raw
    if isinstance(raw, bool) or type(raw).__name__ == "bool_":  # numpy/torch bools from user filters
        return DynamicFilterOutput(keep=bool(raw), reason=None if raw else filter_name)
    raise ContractError(
        f"dynamic sampling filter {filter_name!r} returned {type(raw).__name__}; "
        "it must return a bool or a slime.buffer.DynamicFilterOutput."
    )


class DynamicSamplingPlanner:
    """Bookkeeping for one rollout's dynamic sampling (see the module docstring for the driving loop).

    Args:
        target_groups: groups to return (`--rollout-batch-size`).
        over_sampling_batch_size: groups to pull per top-up (`--over-sampling-batch-size`); default
            `target_groups`; must be >= it.
        filter_fn: `--dynamic-sampling-filter-path` (`DynamicFilterFn`); None keeps every group.
        args: the run's flag namespace, passed to the filter.
    """

    def __init__(
        self,
        *,
        target_groups: int,
        over_sampling_batch_size: int | None = None,
        filter_fn: Callable[..., Any] | None = None,
        args: Any = None,
    ) -> None:
        if isinstance(target_groups, bool) or not isinstance(target_groups, int) or target_groups < 1:
            raise ConfigError(f"target_groups is {target_groups!r}; --rollout-batch-size must be an int >= 1.")
        over = target_groups if over_sampling_batch_size is None else over_sampling_batch_size
        if isinstance(over, bool) or not isinstance(over, int) or over < target_groups:
            raise ConfigError(
                f"--over-sampling-batch-size is {over_sampling_batch_size!r} but must be an int >= "
                f"--rollout-batch-size ({target_groups}); raise it or leave it unset (defaults to the batch size)."
            )
        self.target_groups = target_groups
        self.over_sampling_batch_size = over
        self._filter = filter_fn
        self._filter_name = getattr(filter_fn, "__name__", type(filter_fn).__name__)
        self._args = args
        self._next_ticket = 0
        self._in_flight: dict[int, list[Sample]] = {}
        self._kept: list[list[Sample]] = []
        self._dropped: list[list[Sample]] = []
        self._leftovers: list[list[Sample]] = []
        self._counts: Counter[str] = Counter()
        self._drop_reasons: Counter[str] = Counter()

    # ---- state the loop reads ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once `target_groups` groups were kept."""
        return len(self._kept) >= self.target_groups

    @property
    def num_in_flight(self) -> int:
        """Submitted groups not yet recorded."""
        return len(self._in_flight)

    @property
    def num_kept(self) -> int:
        """Groups kept so far (at most `target_groups`)."""
        return len(self._kept)

    def num_to_submit(self) -> int:
        """Groups to pull and submit now: `over_sampling_batch_size` when kept + in flight < target, else 0."""
        if self.done or len(self._kept) + len(self._in_flight) >= self.target_groups:
            return 0
        return self.over_sampling_batch_size

    def in_flight(self) -> dict[int, list[Sample]]:
        """Ticket -> group as submitted, for every group still generating."""
        return dict(self._in_flight)

    def to_abort(self) -> list[int]:
        """Once done: the tickets still in flight, which the loop should abort (empty before)."""
        return sorted(self._in_flight) if self.done else []

    # ---- events ----------------------------------------------------------------------------------------

    def submit(self, group: Sequence[Sample]) -> int:
        """Register one group about to be generated; returns its ticket."""
        if not group:
            raise ContractError("submit() got an empty group; a group holds n_samples_per_prompt samples.")
        ticket = self._next_ticket
        self._next_ticket += 1
        self._in_flight[ticket] = list(group)
        self._counts["submitted"] += 1
        return ticket

    def submit_many(self, groups: Sequence[Sequence[Sample]]) -> list[int]:
        """`submit` each group; returns the tickets in order."""
        return [self.submit(g) for g in groups]

    def _pop(self, ticket: int, what: str) -> None:
        if ticket not in self._in_flight:
            raise ContractError(f"{what}(ticket={ticket}): no such group in flight (never submitted or recorded).")
        del self._in_flight[ticket]

    def record(self, ticket: int, group: Sequence[Sample]) -> GroupOutcome:
        """A submitted group finished generating and was scored: filter it and keep, drop or set it aside."""
        self._pop(ticket, "record")
        finished = list(group)
        if self.done:
            self._leftovers.append(finished)
            self._counts["surplus"] += 1
            return GroupOutcome.SURPLUS
        verdict = DynamicFilterOutput(keep=True)
        if self._filter is not None:
            verdict = _verdict(self._filter(self._args, finished), self._filter_name)
        if not verdict.keep and verdict.keep_when_insufficient:
            # Dropping it would leave too few kept + pending groups to reach the target without a resample.
            if len(self._kept) + len(self._in_flight) < self.target_groups:
                self._counts["kept_when_insufficient"] += 1
                verdict = DynamicFilterOutput(keep=True)
        if verdict.keep:
            self._kept.append(finished)
            return GroupOutcome.KEPT
        self._dropped.append(finished)
        self._drop_reasons[verdict.reason or self._filter_name] += 1
        return GroupOutcome.DROPPED

    def record_aborted(self, ticket: int, group: Sequence[Sample]) -> None:
        """An in-flight group came back aborted (possibly partial): keep it for the partial-rollout buffer."""
        self._pop(ticket, "record_aborted")
        self._leftovers.append(list(group))
        self._counts["aborted"] += 1

    # ---- outcome -----------------------------------------------------------------------------------------

    def result(self) -> list[list[Sample]]:
        """Exactly `target_groups` kept groups, sorted by their first sample's `index`."""
        if not self.done:
            raise ContractError(
                f"result() before done: {len(self._kept)} of {self.target_groups} groups kept and "
                f"{len(self._in_flight)} in flight; keep submitting while num_to_submit() > 0."
            )
        return sorted(self._kept, key=lambda g: (g[0].index is None, g[0].index or 0))

    def dropped(self) -> list[list[Sample]]:
        """Finished groups the filter dropped, in the order they finished."""
        return list(self._dropped)

    def leftovers(self) -> list[list[Sample]]:
        """Finished-after-done and aborted groups, for `RolloutDataSource.add_samples(..., rollout_id=)`."""
        return list(self._leftovers)

    def metrics(self) -> dict[str, float]:
        """Counts under `rollout/dynamic_filter/`: submitted, kept, dropped, drop_<reason>, surplus, aborted."""
        out = {
            "submitted": self._counts["submitted"],
            "kept": len(self._kept),
            "dropped": len(self._dropped),
            "surplus": self._counts["surplus"],
            "aborted": self._counts["aborted"],
            "in_flight": len(self._in_flight),
            "kept_when_insufficient": self._counts["kept_when_insufficient"],
        }
        out.update({f"drop_{reason}": n for reason, n in sorted(self._drop_reasons.items())})
        return {METRIC_PREFIX + k: float(v) for k, v in out.items()}
