"""The registries cover every flag value of LossConfig, and each entry keeps its family's signature."""

from __future__ import annotations

import inspect
from typing import get_args

import pytest

from slime.loss import AdvantageEstimator, KlType, TisType, registry


@pytest.mark.parametrize("table", [registry.GROUP_SCORES, registry.TOKEN_ADVANTAGES, registry.POLICY_LOSSES])
def test_every_estimator_is_registered(table):
    assert set(table) == set(get_args(AdvantageEstimator))


def test_kl_and_tis_tables_match_their_literals():
    assert set(registry.KL_ESTIMATORS) == set(get_args(KlType))
    assert set(registry.TIS_FUNCTIONS) == set(get_args(TisType))


@pytest.mark.parametrize(
    "table",
    [registry.GROUP_SCORES, registry.TOKEN_ADVANTAGES, registry.POLICY_LOSSES, registry.KL_ESTIMATORS,
     registry.TIS_FUNCTIONS],
)  # fmt: skip
def test_entries_of_one_table_share_one_signature(table):
    signatures = {str(inspect.signature(fn)).split(" ->")[0] for fn in table.values()}
    assert len(signatures) == 1, signatures
