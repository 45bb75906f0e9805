"""Multiple-choice grading (`--rm-type gpqa`): find the chosen letter in a response, compare it with the key.

Valid letters come from `metadata["valid_letters"]`, else from the number of `metadata["choices"]`, else
A-D. The correct letter is `metadata["correct_letter"]`, else the label read as a letter (`"B"`, `"(B)"`), a
0-based index, or the text of one of the choices. The response's reasoning (up to the last `</think>`) is
ignored; the last explicit answer pattern wins (`answer is (C)`, `Answer: C`, `\\boxed{C}`, a trailing lone
letter). Without one, the response still scores when it ends with the correct choice's text. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from slime.sglang.rewards.f1 import normalize_answer

DEFAULT_LETTERS = "ABCD"


def valid_letters(metadata: Mapping[str, Any] | None) -> str:
    """The answer letters this question allows."""
    metadata = metadata or {}
    letters = metadata.get("valid_letters")
    if letters:
        return "".join(str(x).strip().upper() for x in letters)
    choices = metadata.get("choices")
    if isinstance(choices, Sequence) and not isinstance(choices, str) and choices:
        return "".join(chr(ord("A") + i) for i in range(len(choices)))
    return DEFAULT_LETTERS


def _choice_texts(metadata: Mapping[str, Any]) -> dict[str, str]:
    choices = metadata.get("choices")
    if isinstance(choices, Mapping):
        return {str(k).strip().upper(): str(v) for k, v in choices.items()}
    if isinstance(choices, Sequence) and not isinstance(choices, str):
        return {chr(ord("A") + i): str(c) for i, c in enumerate(choices)}
    return {}


def correct_letter(label: Any, metadata: Mapping[str, Any] | None) -> str | None:
    """The letter of the right answer, from metadata or the label; None when it cannot be determined."""
    metadata = metadata or {}
    letters = valid_letters(metadata)
    explicit = metadata.get("correct_letter")
    if explicit is not None and str(explicit).strip().upper() in letters:
        return str(explicit).strip().upper()
    if isinstance(label, int) and not isinstance(label, bool):
        return letters[label] if 0 <= label < len(letters) else None
    text = str(label or "").strip()
    stripped = text.strip("()[]. ").upper()
    if len(stripped) == 1 and stripped in letters:
        return stripped
    if stripped.isdigit() and int(stripped) < len(letters):
        return letters[int(stripped)]
    target = normalize_answer(text)
    for letter, choice in _choice_texts(metadata).items():
        if target and normalize_answer(choice) == target:
            return letter
    return None


def extract_choice(response: str, letters: str = DEFAULT_LETTERS) -> str | None:
    """The letter the response commits to (after its reasoning), or None."""
    text = (response or "").rsplit("</think>", 1)[-1]
    cls = f"[{re.escape(letters)}]"
    patterns = (
        rf"(?i)answer\s*(?:is|:)?\s*[:\s]*\(?\**({cls})\b\)?",
        rf"\\boxed\{{\s*(?:\\text\{{)?\(?({cls})\)?\}}?\s*\}}",
        rf"\(({cls})\)",
        rf"(?:^|\s)({cls})[.)]?\s*$",
    )
    for pattern in patterns:
        found = re.findall(pattern, text, flags=re.MULTILINE)
        found = [f.upper() for f in found if f.upper() in letters]
        if found:
            return found[-1]
    return None


def grade_gpqa(response: str, label: Any, metadata: Mapping[str, Any] | None = None) -> float:
    """1.0 when the response picks the correct letter (or ends with the correct choice's text), else 0.0."""
    metadata = metadata or {}
    letters = valid_letters(metadata)
    answer = correct_letter(label, metadata)
    if answer is None:
        return 0.0
    chosen = extract_choice(response, letters)
    if chosen is not None:
        return 1.0 if chosen == answer else 0.0
    choice_text = _choice_texts(metadata).get(answer) or ("" if len(str(label)) <= 1 else str(label))
    tail = normalize_answer((response or "").rsplit("</think>", 1)[-1])
    target = normalize_answer(choice_text)
    return 1.0 if target and tail.endswith(target) else 0.0
