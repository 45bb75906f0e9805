"""The reward hub's graders against a table of known answers (math-verify edge cases, F1, GPQA letters)."""

from __future__ import annotations

import pytest

from slime.sglang.rewards import (
    dapo_prediction,
    extract_boxed,
    extract_choice,
    f1_score,
    grade_dapo,
    grade_deepscaler,
    grade_gpqa,
    grade_math,
)

MATH_TABLE = [
    # (response, label, expected reward)
    ("so \\boxed{\\frac{1}{2}}", "0.5", 1.0),  # fraction vs decimal
    ("\\boxed{1/2}", "\\frac12", 1.0),  # slash vs \frac shorthand
    ("\\boxed{\\dfrac{3}{4}}", "3/4", 1.0),  # \dfrac
    ("\\boxed{-\\frac{1}{2}}", "-0.5", 1.0),
    ("\\boxed{5 \\text{ cm}}", "5", 1.0),  # unit in \text
    ("\\boxed{12\\text{ inches}}", "12", 1.0),
    ("\\boxed{90^\\circ}", "90", 1.0),  # degrees
    ("\\boxed{10\\%}", "10", 1.0),  # percent
    ("\\boxed{\\$1,000}", "1000", 1.0),  # dollars and thousands separator
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", 1.0),  # symbolic equivalence
    ("\\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    ("\\boxed{[1,2)}", "[1,2)", 1.0),  # interval
    ("\\boxed{\\{1,2\\}}", "\\{2,1\\}", 1.0),  # set
    ("first \\boxed{3} then \\boxed{4}", "4", 1.0),  # the last box counts
    ("\\fbox{7}", "7", 1.0),
    ("answer \\boxed{\\frac{1}{2}}", "\\boxed{\\frac{2}{4}}", 1.0),  # boxed label
    ("\\boxed{3}", "4", 0.0),
    ("\\boxed{\\frac{1}{3}}", "0.333", 0.0),  # a rounded decimal is not the fraction
    ("The answer is 42", "42", 0.0),  # no box, no credit
    ("\\boxed{42", "42", 0.0),  # unclosed box
    ("\\boxed{}", "5", 0.0),
    ("\\boxed{5}", "", 0.0),  # empty label
    ("\\boxed{5}", None, 0.0),
]


@pytest.mark.parametrize(("response", "label", "expected"), MATH_TABLE)
def test_grade_math_table(response: str, label: str | None, expected: float) -> None:
    assert grade_math(response, label) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("a \\boxed{x} b \\boxed{{y}}", "{y}"),
        ("\\boxed 5$", "5"),
        ("none", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_deepscaler_grades_only_after_reasoning() -> None:
    assert grade_deepscaler("<think>\\boxed{3}</think> so \\boxed{4}", "4") == 1.0
    assert grade_deepscaler("<think>\\boxed{4}</think> so \\boxed{3}", "4") == 0.0
    assert grade_deepscaler("###Response \\boxed{4}", "4") == 1.0
    assert grade_deepscaler("no marker \\boxed{4}", "4") == 0.0


def test_dapo_reads_the_last_answer_line_and_returns_a_dict() -> None:
    assert dapo_prediction("work...\nAnswer: 17\n") == "17"
    assert dapo_prediction("Answer: $\\frac{1}{2}$") == "\\frac{1}{2}"
    assert grade_dapo("blah\nAnswer: 1/2", "0.5") == {"score": 1.0, "acc": 1.0, "pred": "1/2"}
    assert grade_dapo("blah\nAnswer: 3", "4")["score"] == -1.0
    assert grade_dapo("x" * 400 + "Answer: 4" + "y" * 400, "4")["score"] == -1.0  # only the tail counts
    assert grade_dapo("so \\boxed{4}", "4")["score"] == 1.0  # boxed fallback


F1_TABLE = [
    ("Paris", "paris", 1.0),
    ("The Eiffel Tower", "eiffel tower", 1.0),  # articles and case ignored
    ("Eiffel tower!", "eiffel tower", 1.0),  # punctuation ignored
    ("eiffel tower in paris", "eiffel tower", 2 * (2 / 4) * 1 / (2 / 4 + 1)),
    ("yes", "no", 0.0),
    ("yes it is", "yes", 0.0),  # yes/no/noanswer must match exactly
    ("london", ["paris", "London"], 1.0),  # list label: best match
    ("", "paris", 0.0),
]


@pytest.mark.parametrize(("prediction", "label", "expected"), F1_TABLE)
def test_f1_table(prediction: str, label: object, expected: float) -> None:
    assert f1_score(prediction, label) == pytest.approx(expected)


GPQA_TABLE = [
    ("<think>maybe (A)</think> The answer is (C).", "C", {}, 1.0),  # reasoning ignored
    ("Answer: B", "B", {}, 1.0),
    ("Answer: B", "C", {}, 0.0),
    ("\\boxed{D}", "(D)", {}, 1.0),  # label in parentheses
    ("The answer is (b)", 1, {}, 1.0),  # 0-based index label, lower-case letter
    ("I pick E", "E", {"valid_letters": ["A", "B", "C", "D", "E"]}, 1.0),
    ("answer: B", "blue", {"choices": ["red", "blue", "green"]}, 1.0),  # label given as choice text
    ("so it must be green", "green", {"choices": ["red", "blue", "green"]}, 1.0),  # text fallback
    ("Answer: A", "x", {"correct_letter": "A"}, 1.0),
    ("no idea", "Z", {}, 0.0),  # unknown key
]


@pytest.mark.parametrize(("response", "label", "metadata", "expected"), GPQA_TABLE)
def test_gpqa_table(response: str, label: object, metadata: dict, expected: float) -> None:
    assert grade_gpqa(response, label, metadata) == expected


def test_extract_choice_takes_the_last_commitment() -> None:
    assert extract_choice("Answer: A ... on reflection, the answer is (B)") == "B"
    assert extract_choice("nothing here") is None
