"""Raw row readers for prompt files: `.jsonl` (line by line) and `.parquet` (pyarrow record batches).

They yield `(row_number, value)` pairs where `value` is the decoded row or a `RowProblem` describing why the
row could not be decoded (bad UTF-8, malformed or truncated JSON). They do not interpret keys and do not
decide whether a problem is fatal; `slime.buffer.prompt_data` does both. Row numbers are 1-based file line
numbers for `.jsonl` and 1-based row numbers for `.parquet`. Whitespace-only `.jsonl` lines are not rows.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slime.types import ConfigError, DataError

_SLICE_RE = re.compile(r"^(?P<path>.+)@\[(?P<start>[+-]?\d*):(?P<stop>[+-]?\d*)\]$")
SUFFIXES = (".jsonl", ".parquet")


@dataclasses.dataclass(frozen=True, slots=True)
class RowProblem:
    """Why one row is unusable: what is wrong and how to fix it (the key is added by the caller)."""

    problem: str
    fix: str


def parse_path_spec(spec: str) -> tuple[Path, slice | None]:
    """Split `file.jsonl@[start:end]` into the path and a row slice (Python slice semantics, negatives allowed)."""
    if "@[" not in spec:
        return Path(spec), None
    match = _SLICE_RE.match(spec)
    if match is None:
        raise ConfigError(
            f"--prompt-data {spec!r}: the row range must look like `path@[start:end]` with integer bounds "
            "(either may be empty, negatives count from the end), e.g. `train.jsonl@[0:1000]`."
        )
    start, stop = match["start"], match["stop"]
    return Path(match["path"]), slice(int(start) if start else None, int(stop) if stop else None)


def check_path(path: Path) -> None:
    """Raise `ConfigError` unless `path` is an existing file with a supported suffix."""
    if path.suffix not in SUFFIXES:
        raise ConfigError(
            f"--prompt-data {str(path)!r}: unsupported file type {path.suffix or '(none)'!r}; "
            "use a .jsonl file (one JSON object per line) or a .parquet file."
        )
    if not path.is_file():
        raise ConfigError(f"--prompt-data {str(path)!r} does not exist or is not a file; check the path.")


def _bounds(rows: slice | None, count: Any) -> tuple[int, int | None]:
    """Resolve a slice to `[start, stop)` row positions; `count()` is only called when a bound is negative."""
    if rows is None:
        return 0, None
    if (rows.start or 0) < 0 or (rows.stop or 0) < 0:
        start, stop, _ = rows.indices(count())
        return start, stop
    return rows.start or 0, rows.stop


def _decode_line(raw: bytes, is_last: bool) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RowProblem(
            f"bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or delete this line",
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if (is_last and not raw.endswith(b"\n")) or exc.pos >= len(text.rstrip()):
            what = f"truncated JSON: the line ends before the JSON value does ({exc.msg})"
            return RowProblem(what, "the file was probably cut short; re-export it or delete the last line")
        return RowProblem(
            f"malformed JSON: {exc.msg} at column {exc.colno}",
            "write one complete JSON object per line (check quotes, commas and brackets) or delete this line",
        )


def _iter_jsonl(path: Path, rows: slice | None) -> Iterator[tuple[int, Any]]:
    def count() -> int:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())

    start, stop = _bounds(rows, count)
    position = -1
    with path.open("rb") as f:
        lines = enumerate(f, start=1)
        pending = next(lines, None)
        while pending is not None:
            number, raw = pending
            pending = next(lines, None)
            if not raw.strip():
                continue
            position += 1
            if position < start:
                continue
            if stop is not None and position >= stop:
                return
            yield number, _decode_line(raw, is_last=pending is None)


def _iter_parquet(path: Path, rows: slice | None) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa  # lazy: reading jsonl must not pay for pyarrow
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path} is not a readable parquet file ({exc}). Fix: re-export it with pyarrow/pandas, "
            "or use a .jsonl file."
        ) from exc
    start, stop = _bounds(rows, lambda: file.metadata.num_rows)
    position = 0
    for batch in file.iter_batches(batch_size=4096):
        if stop is not None and position >= stop:
            return
        for row in batch.to_pylist():
            if position >= start and (stop is None or position < stop):
                yield position + 1, row
            position += 1


def iter_rows(path: Path, rows: slice | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(row_number, decoded_row_or_RowProblem)` for the rows of `path` selected by `rows`."""
    check_path(path)
    if path.suffix == ".jsonl":
        return _iter_jsonl(path, rows)
    return _iter_parquet(path, rows)
