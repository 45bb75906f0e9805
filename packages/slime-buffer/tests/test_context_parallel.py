"""Zigzag CP plan: equal shares, disjoint cover of the padded sequence, one early and one late chunk per rank."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import zigzag_cp_split, zigzag_padded_length, zigzag_rank_tokens


@given(length=st.integers(0, 5000), cp=st.integers(1, 8))
def test_plan_covers_the_padded_sequence_once_in_equal_shares(length, cp):
    plan = zigzag_cp_split(length, cp)
    padded = zigzag_padded_length(length, cp)
    assert len(plan) == cp and padded >= length and padded - length < 2 * cp
    covered = sorted(p for ranges in plan for start, end in ranges for p in range(start, end))
    assert covered == list(range(padded))
    assert len({sum(end - start for start, end in ranges) for ranges in plan}) == 1
    real = sorted(p for r in range(cp) for p in zigzag_rank_tokens(length, cp, r))
    assert real == list(range(length))


def test_rank_r_holds_chunks_r_and_mirror():
    assert zigzag_cp_split(10, 2) == [[(0, 3), (9, 12)], [(3, 6), (6, 9)]]
    assert zigzag_cp_split(16, 4)[0] == [(0, 2), (14, 16)]
    assert zigzag_cp_split(7, 1) == [[(0, 7)]]
    assert zigzag_rank_tokens(10, 2, 0) == [0, 1, 2, 9]
