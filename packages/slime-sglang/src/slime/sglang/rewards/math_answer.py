"""Boxed-answer math grading (`--rm-type math`, `deepscaler`, `dapo`) with HF's math-verify.

Answers are pulled out of the response (the last `\\boxed{}` / `\\fbox{}`, brace-balanced; for `dapo` the last
`Answer:` line) and compared with the label by `math_verify` (LaTeX -> sympy equivalence: fractions, decimals,
percentages, units in `\\text{}`, sets, intervals, equations). When either side does not parse, the normalized
strings are compared instead. These are synchronous pure functions; math-verify guards each step with a
`signal.alarm` timeout that only works in a main thread, so elsewhere the timeouts are off (the reward hub
runs these graders in worker processes, whose main thread keeps them on). No LaTeX parsing is done here.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MATH_VERIFY_TIMEOUT_S = 5
"""Per-step time limit of math-verify's parse / verify (only enforced in a main thread)."""
DAPO_TAIL_CHARS = 300
"""DAPO only looks at the end of the response (the original recipe's window)."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_LINE = re.compile(r"(?i)answer\s*:\s*([^\n]+)")


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`) in `text`; None if there is none.

    Braces are balanced, so `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`. An unclosed box gives None.
    """
    if not isinstance(text, str):
        return None
    start, command = max((text.rfind(cmd), cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    rest = text[start + len(command) :]
    if rest.startswith(" "):  # `\boxed 5` form: up to the next `$` or whitespace
        return rest.strip().split("$")[0].split()[0] if rest.strip() else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            return rest[1:i]
    return None


def _timeout() -> int | None:
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _normalize_text(answer: str) -> str:
    answer = re.sub(r"\\text\{([^}]*)\}|\\mathrm\{([^}]*)\}", lambda m: m.group(1) or m.group(2) or "", answer)
    answer = answer.replace("\\!", "").replace("\\,", "").replace("\\ ", "").replace("$", "")
    return re.sub(r"\s+", "", answer).rstrip(".").lower()


def math_equal(prediction: str, ground_truth: str) -> bool:
    """True when `prediction` and `ground_truth` (bare answers, LaTeX or plain) are mathematically equal."""
    from math_verify import parse, verify  # imported lazily: sympy takes seconds to import

    if not prediction.strip() or not ground_truth.strip():
        return False
    timeout = _timeout()
    gold = parse("\\boxed{" + ground_truth + "}", parsing_timeout=timeout)
    pred = parse("\\boxed{" + prediction + "}", parsing_timeout=timeout)
    if gold and pred and verify(gold, pred, timeout_seconds=timeout):
        return True
    return _normalize_text(prediction) == _normalize_text(ground_truth)


def _label_answer(label: Any) -> str:
    if label is None:
        return ""
    text = str(label)
    boxed = extract_boxed(text)
    return (boxed if boxed is not None else text).strip()


def grade_math(response: str, label: Any) -> float:
    """slime's `math`: 1.0 when the last boxed answer of `response` equals the label (itself maybe boxed), else 0.0.

    Example:
        >>> grade_math("so the answer is \\\\boxed{\\\\frac{1}{2}}", "0.5")
        1.0
    """
    prediction = extract_boxed(response or "")
    gold = _label_answer(label)
    if prediction is None or not gold:
        return 0.0
    return 1.0 if math_equal(prediction, gold) else 0.0


def final_answer_part(response: str) -> str | None:
    """The part of a reasoning response after the last `</think>` (else after `###Response`); None if neither."""
    for marker in ("</think>", "###Response"):
        if marker in response:
            return response.rsplit(marker, 1)[1]
    return None


def grade_deepscaler(response: str, label: Any) -> float:
    """slime's `deepscaler`: grade the text after `</think>` (or `###Response`) like `math`; 0.0 without either."""
    answer_part = final_answer_part(response or "")
    return 0.0 if answer_part is None else grade_math(answer_part, label)


def dapo_prediction(response: str) -> str | None:
    """The predicted answer DAPO reads: the last `Answer: ...` line of the tail, else its last boxed answer."""
    tail = (response or "")[-DAPO_TAIL_CHARS:]
    lines = _ANSWER_LINE.findall(tail)
    if lines:
        answer = lines[-1].strip()
        boxed = extract_boxed(answer)
        return (boxed if boxed is not None else answer).strip().rstrip(".").strip("$ ")
    return extract_boxed(tail)


def grade_dapo(response: str, label: Any) -> dict[str, Any]:
    """slime's `dapo`: `{"score": 1.0 | -1.0, "acc": 1.0 | 0.0, "pred": str}`; use `--reward-key score`."""
    prediction = dapo_prediction(response)
    gold = _label_answer(label)
    correct = prediction is not None and bool(gold) and math_equal(prediction, gold)
    return {"score": 1.0 if correct else -1.0, "acc": 1.0 if correct else 0.0, "pred": prediction or ""}
