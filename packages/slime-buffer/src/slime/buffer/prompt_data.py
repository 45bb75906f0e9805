"""Prompt datasets: read `--prompt-data` (`.jsonl` / `.parquet`, optionally `path@[start:end]`) into `Sample`s.

Each row becomes one prototype `Sample` with `prompt` (a string, or the chat message list kept as a list so
the caller can apply the tokenizer's chat template), `label`, `metadata` (a JSON object or a JSON string
holding one) and, when present, `metadata["tools"]`. A bad row raises one `DataError` naming the file, the
line, the key and the fix; with `skip_bad_rows=True` it is skipped, counted and reported instead, never
dropped silently. This module does not tokenize, does not render chat templates and does not filter long
prompts (those need a tokenizer and belong to the rollout).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from slime.buffer._rows import RowProblem, iter_rows, parse_path_spec
from slime.types import ConfigError, DataError, Sample

logger = logging.getLogger(__name__)

_SKIP_HINT = "or pass skip_bad_rows=True (--skip-bad-rows) to skip and count bad rows"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PromptDataConfig:
    """Where the prompts are and which keys of a row hold what (slime's `--prompt-data` and `--*-key` flags)."""

    path: str
    """`--prompt-data`: a `.jsonl` or `.parquet` file, optionally `path@[start:end]` to take a row range."""
    input_key: str = "input"
    """`--input-key` (a.k.a. prompt key): the row key holding the prompt, a string or a chat message list."""
    label_key: str | None = None
    """`--label-key`: the row key holding the label / ground truth; None stores no label."""
    metadata_key: str = "metadata"
    """`--metadata-key`: the row key holding a JSON object (or a JSON string of one) copied to `metadata`."""
    tool_key: str | None = "tools"
    """`--tool-key`: the row key holding tool schemas (a list or a JSON string of one), kept in `metadata["tools"]`."""
    apply_chat_template: bool = False
    """`--apply-chat-template`: wrap string prompts as one user message; the caller renders the template."""
    skip_bad_rows: bool = False
    """Skip unusable rows (counted and logged) instead of raising on the first one."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise ConfigError(f"PromptDataConfig.path is {self.path!r}; set --prompt-data to a .jsonl/.parquet file.")
        for name in ("input_key", "metadata_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"PromptDataConfig.{name} is {value!r}; set --{name.replace('_', '-')} to a key.")
        for name in ("label_key", "tool_key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"PromptDataConfig.{name} is {value!r}; use a non-empty key or None.")


@dataclasses.dataclass(frozen=True, slots=True)
class BadRow:
    """One unusable row: where it is, which key was being read, what is wrong and how to fix it."""

    path: str
    line: int
    key: str
    problem: str
    fix: str

    def message(self) -> str:
        """The one-line error text (file, line, key, problem, fix)."""
        return f"{self.path} line {self.line}, key {self.key!r}: {self.problem}. Fix: {self.fix}."


class _RowError(Exception):
    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.key, self.problem, self.fix = key, problem, fix


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_messages(key: str, messages: list[Any]) -> None:
    if not messages:
        raise _RowError(key, "the chat message list is empty", "give at least one {'role', 'content'} message")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise _RowError(
                key,
                f"message {i} is {_type_name(message)} without a string 'role'",
                "make every message an object like {'role': 'user', 'content': '...'}",
            )


def _prompt(row: Mapping[str, Any], config: PromptDataConfig) -> str | list[dict[str, Any]]:
    key = config.input_key
    if key not in row:
        raise _RowError(
            key,
            f"missing key {key!r} (the row has keys {sorted(row)})",
            "set --input-key to the key that holds the prompt, or add it to the row",
        )
    value = row[key]
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if config.apply_chat_template else value
    if isinstance(value, list):
        _check_messages(key, value)
        return [dict(m) for m in value]
    raise _RowError(
        key,
        f"wrong type: expected a string or a list of chat messages, got {_type_name(value)}",
        "store the prompt as a string or as [{'role': ..., 'content': ...}, ...]",
    )


def _json_container(key: str, value: Any, want: type, what: str) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError(
                key, f"the string is not valid JSON ({exc.msg})", f"store {what} or a JSON string of it"
            ) from None
    if not isinstance(value, want):
        raise _RowError(key, f"wrong type: expected {what}, got {_type_name(value)}", f"store {what} under {key!r}")
    return value


def _row_to_sample(row: Any, config: PromptDataConfig) -> Sample:
    if not isinstance(row, Mapping):
        raise _RowError(
            config.input_key, f"the row is a JSON {_type_name(row)}, not an object", "make every row a JSON object"
        )
    prompt = _prompt(row, config)
    label = None
    if config.label_key is not None:
        if config.label_key not in row:
            raise _RowError(
                config.label_key,
                f"missing key {config.label_key!r} (the row has keys {sorted(row)})",
                "set --label-key to the key that holds the label, or unset it for unlabelled data",
            )
        label = row[config.label_key]
    raw_metadata = row.get(config.metadata_key)
    metadata: dict[str, Any] = {}
    if raw_metadata is not None:
        metadata = dict(_json_container(config.metadata_key, raw_metadata, dict, "a JSON object"))
    if config.tool_key is not None and row.get(config.tool_key) is not None:
        metadata["tools"] = _json_container(config.tool_key, row[config.tool_key], list, "a list of tool schemas")
    return Sample(prompt=prompt, label=label, metadata=metadata)


class PromptDataset(Sequence[Sample]):
    """The prompts of one file as prototype `Sample`s, in file order.

    Items are prototypes shared by every epoch: clone them (`Sample.clone`) before filling them in;
    `RolloutDataSource` does. `skipped` lists the rows dropped under `skip_bad_rows=True`.
    """

    def __init__(self, samples: Iterable[Sample], *, source: str = "<memory>", skipped: Iterable[BadRow] = ()):
        self._samples: list[Sample] = list(samples)
        self.source = source
        self.skipped: tuple[BadRow, ...] = tuple(skipped)
        if not self._samples:
            why = f"all {len(self.skipped)} rows were bad (first: {self.skipped[0].message()})" if self.skipped else ""
            raise DataError(
                f"{source}: no usable prompt rows{' - ' + why if why else ' (the file or row range is empty)'}. "
                "Fix: point --prompt-data at a non-empty .jsonl/.parquet file and check the @[start:end] range."
            )

    @classmethod
    def load(cls, config: PromptDataConfig) -> PromptDataset:
        """Read `config.path`; raise `DataError` on the first bad row unless `config.skip_bad_rows`."""
        path, rows = parse_path_spec(config.path)
        return cls.from_rows(iter_rows(path, rows), config, source=str(path))

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[int, Any]], config: PromptDataConfig, *, source: str = "<memory>"
    ) -> PromptDataset:
        """Build from `(line_number, row)` pairs (rows as decoded JSON values); same checks as `load`."""
        skipped: list[BadRow] = []
        samples = list(cls._convert(rows, config, source, skipped))
        if skipped:
            logger.warning(
                "%s: skipped %d bad rows (skip_bad_rows=True); first: %s", source, len(skipped), skipped[0].message()
            )
        return cls(samples, source=source, skipped=skipped)

    @staticmethod
    def _convert(
        rows: Iterable[tuple[int, Any]], config: PromptDataConfig, source: str, skipped: list[BadRow]
    ) -> Iterator[Sample]:
        for line, row in rows:
            try:
                if isinstance(row, RowProblem):
                    raise _RowError(config.input_key, row.problem, row.fix)
                yield _row_to_sample(row, config)
            except _RowError as exc:
                bad = BadRow(source, line, exc.key, exc.problem, exc.fix)
                if not config.skip_bad_rows:
                    raise DataError(f"{bad.message()[:-1]}, {_SKIP_HINT}.") from None
                skipped.append(bad)

    @property
    def num_skipped(self) -> int:
        """How many rows `skip_bad_rows` skipped."""
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self._samples)

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...
    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        return self._samples[index]


def load_prompt_data(config: PromptDataConfig | str, **keys: Any) -> PromptDataset:
    """Convenience: `load_prompt_data("train.jsonl@[0:100]", label_key="label")`."""
    if isinstance(config, str):
        config = PromptDataConfig(path=config, **keys)
    return PromptDataset.load(config)


__all__ = ["BadRow", "PromptDataConfig", "PromptDataset", "load_prompt_data"]
