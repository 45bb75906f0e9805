"""Prompt files: jsonl and parquet rows, keys, metadata/tools parsing, row ranges, and bad input reporting."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from slime.buffer import PromptDataConfig, PromptDataset, load_prompt_data
from slime.types import ConfigError, DataError

ROWS = [
    {"input": "What is 1+1?", "label": "2", "metadata": {"source_name": "math"}},
    {"input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "label": "hello"},
    {"input": "use a tool", "label": 3, "metadata": '{"difficulty": 2}', "tools": '[{"name": "calc"}]'},
    {"input": "plain", "label": None, "tools": [{"name": "search"}]},
]


def parquet():
    """pyarrow, imported only by the parquet tests (it is slow to import)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def write_jsonl(path: Path, rows: list, *, raw_lines: dict[int, bytes] | None = None) -> Path:
    lines = [json.dumps(r).encode() + b"\n" for r in rows]
    for position, raw in (raw_lines or {}).items():
        lines.insert(position, raw)
    path.write_bytes(b"".join(lines))
    return path


def test_jsonl_rows_become_samples(tmp_path):
    data = load_prompt_data(str(write_jsonl(tmp_path / "p.jsonl", ROWS)), label_key="label")
    assert len(data) == 4
    assert data[0].prompt == "What is 1+1?" and data[0].label == "2"
    assert data[0].metadata == {"source_name": "math"}
    assert data[1].prompt == ROWS[1]["input"], "chat messages stay a list for the caller's chat template"
    assert data[2].metadata == {"difficulty": 2, "tools": [{"name": "calc"}]}, "JSON strings are parsed"
    assert data[3].metadata == {"tools": [{"name": "search"}]}
    assert data.num_skipped == 0


def test_custom_keys_and_chat_wrapping(tmp_path):
    rows = [{"question": "q1", "answer": "a1", "info": {"k": 1}, "fns": []}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    config = PromptDataConfig(
        path=str(path), input_key="question", label_key="answer", metadata_key="info", tool_key="fns",
        apply_chat_template=True,
    )  # fmt: skip
    (sample,) = PromptDataset.load(config)
    assert sample.prompt == [{"role": "user", "content": "q1"}]
    assert sample.label == "a1" and sample.metadata == {"k": 1, "tools": []}


def test_parquet_reads_like_jsonl(tmp_path):
    pa, pq = parquet()
    rows = [
        {"input": "a", "label": "x", "metadata": '{"m": 1}'},
        {"input": "b", "label": "y", "metadata": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    data = load_prompt_data(str(tmp_path / "p.parquet"), label_key="label")
    assert [(s.prompt, s.label, s.metadata) for s in data] == [("a", "x", {"m": 1}), ("b", "y", {})]


def test_parquet_chat_messages_and_row_range(tmp_path):
    pa, pq = parquet()
    rows = [{"input": [{"role": "user", "content": f"m{i}"}]} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    data = load_prompt_data(str(tmp_path / "p.parquet") + "@[-3:]")
    assert [s.prompt[0]["content"] for s in data] == ["m7", "m8", "m9"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("@[2:5]", [2, 3, 4]), ("@[:2]", [0, 1]), ("@[8:]", [8, 9]), ("@[-2:]", [8, 9]), ("@[1:-7]", [1, 2])],
)
def test_row_range_slices_like_python(tmp_path, spec, expected):
    path = write_jsonl(tmp_path / "p.jsonl", [{"input": str(i)} for i in range(10)], raw_lines={3: b"\n"})
    assert [int(s.prompt) for s in load_prompt_data(str(path) + spec)] == expected


def test_bad_rows_outside_the_range_are_not_read(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"input": "a"}, {"input": "b"}], raw_lines={2: b"{broken\n"})
    assert len(load_prompt_data(str(path) + "@[0:2]")) == 2


@pytest.mark.parametrize("spec", ["p.jsonl@[a:b]", "p.jsonl@[1:2:3]", "p.jsonl@1:2"])
def test_bad_row_range_is_a_config_error(tmp_path, spec):
    write_jsonl(tmp_path / "p.jsonl", [{"input": "a"}])
    with pytest.raises(ConfigError, match=r"path@\[start:end\]|unsupported file type"):
        load_prompt_data(str(tmp_path / spec))


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "p.csv").write_text("input\nx\n")
    with pytest.raises(ConfigError, match=r"unsupported file type '\.csv'.*\.jsonl.*\.parquet"):
        load_prompt_data(str(tmp_path / "p.csv"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompt_data(str(tmp_path / "missing.jsonl"))


BAD_LINES = {
    "malformed": (b'{"input": "a",, "label": 1}\n', "malformed JSON"),
    "not_utf8": (b'{"input": "caf\xe9"}\n', "not valid UTF-8"),
    "missing_key": (b'{"prompt": "a", "label": 1}\n', "missing key 'input'"),
    "wrong_type": (b'{"input": 42, "label": 1}\n', "wrong type.*got int"),
    "not_object": (b'["input", "a"]\n', "not an object"),
    "bad_metadata": (b'{"input": "a", "label": 1, "metadata": "{oops"}\n', "not valid JSON"),
    "metadata_list": (b'{"input": "a", "label": 1, "metadata": [1]}\n', "expected a JSON object, got list"),
    "bad_tools": (b'{"input": "a", "label": 1, "tools": {"name": "x"}}\n', "expected a list of tool schemas"),
    "bad_message": (b'{"input": [{"content": "no role"}], "label": 1}\n', "without a string 'role'"),
    "missing_label": (b'{"input": "a"}\n', "missing key 'label'"),
}
KEY_OF = {"bad_metadata": "metadata", "metadata_list": "metadata", "bad_tools": "tools", "missing_label": "label"}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_one_bad_row_raises_one_error_naming_file_line_key_and_fix(tmp_path, case):
    raw, problem = BAD_LINES[case]
    good = [{"input": "ok", "label": 1}] * 3
    path = write_jsonl(tmp_path / "p.jsonl", good, raw_lines={2: raw})
    with pytest.raises(DataError) as info:
        load_prompt_data(str(path), label_key="label")
    message = str(info.value)
    assert f"{path} line 3" in message
    assert f"key '{KEY_OF.get(case, 'input')}'" in message
    assert "Fix:" in message and "skip_bad_rows" in message
    assert re.search(problem, message), message


def test_truncated_last_line_is_reported_as_truncated(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"input": "a"}\n{"input": "b"}\n{"input": "unfinis')
    with pytest.raises(DataError, match=r"p\.jsonl line 3, key 'input': truncated JSON.*Fix: .*cut short"):
        load_prompt_data(str(path))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_one_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"empty\.jsonl: no usable prompt rows.*Fix: point --prompt-data"):
        load_prompt_data(str(path))


def test_empty_parquet_and_corrupt_parquet(tmp_path):
    pa, pq = parquet()
    pq.write_table(pa.table({"input": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(DataError, match="no usable prompt rows"):
        load_prompt_data(str(tmp_path / "e.parquet"))
    (tmp_path / "c.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"c\.parquet is not a readable parquet file.*Fix"):
        load_prompt_data(str(tmp_path / "c.parquet"))


def test_parquet_bad_row_names_its_row(tmp_path):
    pa, pq = parquet()
    pq.write_table(pa.Table.from_pylist([{"input": "a"}, {"input": None}]), tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet line 2, key 'input': wrong type.*got null"):
        load_prompt_data(str(tmp_path / "p.parquet"))


def test_skip_bad_rows_counts_and_reports(tmp_path, caplog):
    raws = {1: BAD_LINES["malformed"][0], 3: BAD_LINES["not_utf8"][0], 5: BAD_LINES["wrong_type"][0]}
    path = write_jsonl(tmp_path / "p.jsonl", [{"input": str(i), "label": i} for i in range(4)], raw_lines=raws)
    config = PromptDataConfig(path=str(path), label_key="label", skip_bad_rows=True)
    with caplog.at_level(logging.WARNING, logger="slime.buffer.prompt_data"):
        data = PromptDataset.load(config)
    assert [s.prompt for s in data] == ["0", "1", "2", "3"]
    assert data.num_skipped == 3
    assert [(b.line, b.key) for b in data.skipped] == [(2, "input"), (4, "input"), (6, "input")]
    assert "skipped 3 bad rows" in caplog.text and "line 2" in caplog.text


def test_skip_bad_rows_with_nothing_left_still_raises(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [], raw_lines={0: b"{bad\n", 1: b"{worse\n"})
    with pytest.raises(DataError, match="all 2 rows were bad.*line 1"):
        PromptDataset.load(PromptDataConfig(path=str(path), skip_bad_rows=True))


@pytest.mark.parametrize(
    ("field", "value"), [("path", ""), ("input_key", ""), ("metadata_key", None), ("label_key", ""), ("tool_key", 3)]
)
def test_config_validation_names_the_field(field, value):
    kwargs = {"path": "p.jsonl", field: value}
    with pytest.raises(ConfigError, match=field):
        PromptDataConfig(**kwargs)
