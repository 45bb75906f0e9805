"""Write slime's prompt file for the example: `python -m search_r1.prepare IN.jsonl OUT.jsonl`.

Each input row `{"question", "golden_answers"}` becomes `{"prompt", "label", "metadata"}` with the instruction
prompt, the golden answers as the label and the question kept in the metadata (slime maps these with
`--input-key prompt --label-key label --metadata-key metadata`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from search_r1.generate import format_prompt


def make_row(question: str, golden_answers: list[str]) -> dict[str, Any]:
    """One prompt row."""
    return {"prompt": format_prompt(question), "label": list(golden_answers), "metadata": {"question": question}}


def convert(source: str | Path, target: str | Path) -> int:
    """Convert a question file; returns the number of rows written."""
    rows = [json.loads(line) for line in Path(source).read_text(encoding="utf-8").splitlines() if line.strip()]
    out = [make_row(r["question"], r["golden_answers"]) for r in rows]
    Path(target).write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return len(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m search_r1.prepare IN.jsonl OUT.jsonl")
    print(f"wrote {convert(sys.argv[1], sys.argv[2])} rows to {sys.argv[2]}")
