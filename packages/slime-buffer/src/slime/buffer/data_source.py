"""`RolloutDataSource`: prompt groups for each rollout, plus the partial-rollout buffer, with resumable state.

`get_samples(k)` first takes up to `k` buffered groups through the buffer filter (default `pop_first`), then
tops up from the dataset: each prompt becomes a group of `n_samples_per_prompt` deep copies with running
`group_index` / `index` counters. The dataset order is a permutation per epoch drawn from `seed + epoch`
(when shuffling) and wraps across epochs. `state_dict()` holds the cursor, epoch, seed, counters and the
whole buffer (every sample via `Sample.to_dict`), so a restored source yields exactly the future an
uninterrupted one would. It does not generate, score or filter samples.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from slime.buffer.filters import pop_first
from slime.buffer.prompt_data import PromptDataConfig, PromptDataset
from slime.types import BufferFilterFn, ContractError, DataError, Sample, resolve

STATE_FORMAT = "slime.buffer.RolloutDataSource/1"
_INT_FIELDS = ("epoch", "cursor", "seed", "sample_index", "group_index", "dataset_size")


class RolloutDataSource:
    """Serve `list[list[Sample]]` prompt groups to the rollout; keep unfinished groups for later rollouts.

    Args:
        dataset: prototype prompt samples (a `PromptDataset`), or None for slime's
            `--disable-rollout-global-dataset` mode, where groups of empty samples are served.
        n_samples_per_prompt: group size (`--n-samples-per-prompt`).
        shuffle: shuffle the prompts each epoch (`--rollout-shuffle`).
        seed: shuffle seed (`--rollout-seed`); epoch `e` uses `random.Random(seed + e)`.
        buffer_filter: picks buffered groups (`--buffer-filter-path`); default `pop_first`.
        args: the run's flag namespace, passed through to the buffer filter.
    """

    def __init__(
        self,
        dataset: Sequence[Sample] | None,
        *,
        n_samples_per_prompt: int = 1,
        shuffle: bool = False,
        seed: int = 42,
        buffer_filter: BufferFilterFn | None = None,
        args: Any = None,
    ) -> None:
        if not isinstance(n_samples_per_prompt, int) or n_samples_per_prompt < 1:
            raise ContractError(f"n_samples_per_prompt must be an int >= 1 (got {n_samples_per_prompt!r}).")
        if dataset is not None and len(dataset) == 0:
            raise DataError("RolloutDataSource got an empty dataset; check --prompt-data.")
        self._dataset = dataset
        self.n_samples_per_prompt = n_samples_per_prompt
        self.shuffle = shuffle
        self.seed = seed
        self._buffer_filter: BufferFilterFn = buffer_filter or pop_first
        self._args = args
        self._buffer: list[list[Sample]] = []
        self.epoch = 0
        self.cursor = 0
        self.sample_index = 0
        self.group_index = 0
        self._order_epoch = -1
        self._order: list[int] = []

    @classmethod
    def from_args(cls, args: Any) -> RolloutDataSource:
        """Build from slime's flag names (`prompt_data`, `input_key`, ..., `rollout_shuffle`, `rollout_seed`)."""
        dataset = None
        if getattr(args, "rollout_global_dataset", True) and getattr(args, "prompt_data", None):
            config = PromptDataConfig(
                path=args.prompt_data,
                input_key=getattr(args, "input_key", None) or getattr(args, "prompt_key", None) or "input",
                label_key=getattr(args, "label_key", None),
                metadata_key=getattr(args, "metadata_key", None) or "metadata",
                tool_key=getattr(args, "tool_key", "tools"),
                apply_chat_template=bool(getattr(args, "apply_chat_template", False)),
                skip_bad_rows=bool(getattr(args, "skip_bad_rows", False)),
            )
            dataset = PromptDataset.load(config)
        filter_path = getattr(args, "buffer_filter_path", None)
        buffer_filter = resolve(filter_path, BufferFilterFn, flag="--buffer-filter-path") if filter_path else None
        return cls(
            dataset,
            n_samples_per_prompt=getattr(args, "n_samples_per_prompt", 1),
            shuffle=bool(getattr(args, "rollout_shuffle", False)),
            seed=getattr(args, "rollout_seed", 42),
            buffer_filter=buffer_filter,
            args=args,
        )

    # ---- serving -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of prompts per epoch (0 without a dataset)."""
        return 0 if self._dataset is None else len(self._dataset)

    @property
    def dataset(self) -> Sequence[Sample] | None:
        """The prototype prompts (do not mutate them)."""
        return self._dataset

    @property
    def buffer(self) -> list[list[Sample]]:
        """A shallow copy of the buffered groups, oldest first."""
        return list(self._buffer)

    def epoch_order(self, epoch: int) -> list[int]:
        """The dataset positions in the order epoch `epoch` serves them."""
        order = list(range(len(self)))
        if self.shuffle:
            random.Random(self.seed + epoch).shuffle(order)
        return order

    def get_samples(self, num_groups: int, *, rollout_id: int | None = None) -> list[list[Sample]]:
        """Return `num_groups` groups: buffered ones first (via the buffer filter), then fresh prompts."""
        if num_groups < 0:
            raise ContractError(f"get_samples(num_groups={num_groups}): the number of groups must be >= 0.")
        groups: list[list[Sample]] = []
        if self._buffer and num_groups:
            groups = self._take_from_buffer(num_groups, rollout_id)
        for _ in range(num_groups - len(groups)):
            groups.append(self._next_group())
        return groups

    def _take_from_buffer(self, num_groups: int, rollout_id: int | None) -> list[list[Sample]]:
        before = len(self._buffer)
        taken = list(self._buffer_filter(self._args, rollout_id, self._buffer, num_groups))
        if len(taken) > num_groups or len(self._buffer) != before - len(taken):
            raise ContractError(
                f"buffer filter {getattr(self._buffer_filter, '__name__', self._buffer_filter)!r} returned "
                f"{len(taken)} groups for num_samples={num_groups} and left {len(self._buffer)} of {before} "
                "buffered; it must remove the groups it returns from `buffer` and return at most num_samples."
            )
        return [list(g) for g in taken]

    def _next_group(self) -> list[Sample]:
        if self._dataset is None:
            prototype = Sample()
        else:
            if self.cursor >= len(self._dataset):
                self.epoch, self.cursor = self.epoch + 1, 0
            if self._order_epoch != self.epoch:
                self._order, self._order_epoch = self.epoch_order(self.epoch), self.epoch
            prototype = self._dataset[self._order[self.cursor]]
            self.cursor += 1
        group = []
        for _ in range(self.n_samples_per_prompt):
            sample = prototype.clone()
            sample.group_index, sample.index = self.group_index, self.sample_index
            self.sample_index += 1
            group.append(sample)
        self.group_index += 1
        return group

    def add_samples(self, groups: Iterable[Sequence[Sample]], *, rollout_id: int | None = None) -> None:
        """Append groups to the buffer (partial rollouts, aborted groups) for a later `get_samples`.

        With `rollout_id`, each sample without `metadata["start_rollout_id"]` gets it: the rollout that
        started generating it, which buffer filters may use to drop stale samples.
        """
        new = [list(g) for g in groups]
        for group in new:
            if len(group) != self.n_samples_per_prompt or not all(isinstance(s, Sample) for s in group):
                raise ContractError(
                    f"add_samples: every group must be a list of {self.n_samples_per_prompt} Samples "
                    f"(n_samples_per_prompt); got {len(group)} items of types "
                    f"{sorted({type(s).__name__ for s in group})}."
                )
        if rollout_id is not None:
            for sample in (s for g in new for s in g):
                sample.metadata.setdefault("start_rollout_id", rollout_id)
        self._buffer.extend(new)

    # ---- state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot: position, seed, counters and every buffered sample."""
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "sample_index": self.sample_index,
            "group_index": self.group_index,
            "dataset_size": len(self),
            "n_samples_per_prompt": self.n_samples_per_prompt,
            "buffer": [[s.to_dict() for s in g] for g in self._buffer],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the source then serves exactly what the saved one would have.

        `seed` and `shuffle` are taken from the state (the saved order wins over the constructor's).
        """
        _check_state(state, len(self))
        buffer = [[Sample.from_dict(s) for s in g] for g in state["buffer"]]
        if any(len(g) != self.n_samples_per_prompt for g in buffer):
            raise DataError(
                f"data source state: buffered groups have sizes {sorted({len(g) for g in buffer})} but "
                f"n_samples_per_prompt is {self.n_samples_per_prompt}. "
                "Fix: resume with the same --n-samples-per-prompt."
            )
        self.epoch, self.cursor, self.seed = state["epoch"], state["cursor"], state["seed"]
        self.shuffle = bool(state["shuffle"])
        self.sample_index, self.group_index = state["sample_index"], state["group_index"]
        self._buffer = buffer
        self._order_epoch = -1

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `state_dict()` as JSON atomically (a temp file in the same directory, fsync, rename)."""
        target = Path(path)
        try:
            text = json.dumps(self.state_dict(), allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise ContractError(
                f"data source state is not JSON-serialisable ({exc}); buffered samples' metadata, label and "
                "reward must hold only JSON values (str, numbers, bool, None, lists, dicts)."
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | os.PathLike[str]) -> None:
        """Read a file written by `save` and restore it."""
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                f"{path}: cannot read the data source state ({exc}). Fix: pass a file written by save()."
            ) from exc
        if not isinstance(state, dict):
            raise DataError(f"{path}: the data source state must be a JSON object. Fix: pass a file written by save().")
        self.load_state_dict(state)


def _check_state(state: dict[str, Any], dataset_size: int) -> None:
    if state.get("format") != STATE_FORMAT:
        raise DataError(f"data source state has format {state.get('format')!r}, expected {STATE_FORMAT!r}.")
    for key in _INT_FIELDS:
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DataError(f"data source state key {key!r} is {value!r}; expected an int >= 0 (file damaged?).")
    if state["dataset_size"] != dataset_size:
        raise DataError(
            f"data source state was saved with {state['dataset_size']} prompts but the data now has {dataset_size}. "
            "Fix: resume with the same --prompt-data (and row range) as the checkpoint."
        )
    if dataset_size and state["cursor"] > dataset_size:
        raise DataError(f"data source state key 'cursor' is {state['cursor']} > {dataset_size} prompts (damaged?).")
    if not isinstance(state.get("buffer"), list) or not all(isinstance(g, list) for g in state["buffer"]):
        raise DataError("data source state key 'buffer' must be a list of groups (lists of sample dicts).")
