"""Token-level F1 between a response and its label (`--rm-type f1`, SQuAD-style), a pure function.

Both sides are normalized the SQuAD way (lower case, punctuation and the articles a/an/the removed,
whitespace collapsed). The answers `yes`, `no` and `noanswer` only score when they match exactly. A list
label means several acceptable answers: the best F1 counts. It does not extract answers from tags; callers
that need that (search-R1's `<answer>`) pass the extracted text.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_EXACT_ONLY = frozenset({"yes", "no", "noanswer"})
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1_one(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction), normalize_answer(ground_truth)
    if (pred in _EXACT_ONLY or gold in _EXACT_ONLY) and pred != gold:
        return 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, label: Any) -> float:
    """F1 in [0, 1] of `prediction` against `label` (a string, or a list of acceptable strings: the best wins).

    Example:
        >>> round(f1_score("The Eiffel tower", "eiffel tower in paris"), 3)
        0.667
    """
    if label is None or prediction is None:
        return 0.0
    golds: Sequence[Any] = label if isinstance(label, list | tuple) else [label]
    return max((_f1_one(str(prediction), str(g)) for g in golds), default=0.0)


def exact_match(prediction: str, label: Any) -> float:
    """1.0 when the normalized prediction equals a normalized label (or one of a list of labels), else 0.0."""
    if label is None or prediction is None:
        return 0.0
    golds = label if isinstance(label, list | tuple) else [label]
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(str(g)) for g in golds) else 0.0
