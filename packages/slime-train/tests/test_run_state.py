"""Run-state checkpoints: atomic publish, latest pointer, clear errors on damage."""

from __future__ import annotations

import pytest

from slime.train.run_state import latest_rollout_id, load_run_state, save_run_state
from slime.types import ConfigError


def test_round_trip_and_latest(tmp_path):
    assert load_run_state(tmp_path) is None and latest_rollout_id(tmp_path) is None
    save_run_state(tmp_path, 3, {"data_source": {"cursor": 5}})
    save_run_state(tmp_path, 7, {"data_source": {"cursor": 9}})
    assert latest_rollout_id(tmp_path) == 7
    assert load_run_state(tmp_path) == {"rollout_id": 7, "data_source": {"cursor": 9}}
    assert load_run_state(tmp_path, 3)["data_source"] == {"cursor": 5}
    assert not list(tmp_path.rglob("*.tmp"))


def test_damaged_pointer_and_missing_state(tmp_path):
    (tmp_path / "latest_rollout_state.txt").write_text("oops\n")
    with pytest.raises(ConfigError, match="not a rollout id"):
        latest_rollout_id(tmp_path)
    (tmp_path / "latest_rollout_state.txt").write_text("4\n")
    with pytest.raises(ConfigError, match="state_4.json is missing"):
        load_run_state(tmp_path)


def test_a_crash_before_the_pointer_moves_keeps_the_previous_state(tmp_path, monkeypatch):
    save_run_state(tmp_path, 1, {"data_source": {"cursor": 1}})
    import slime.train.run_state as rs

    real = rs._atomic_write

    def crash_on_pointer(path, text):
        if path.name == rs.LATEST:
            raise KeyboardInterrupt("killed")
        real(path, text)

    monkeypatch.setattr(rs, "_atomic_write", crash_on_pointer)
    with pytest.raises(KeyboardInterrupt):
        save_run_state(tmp_path, 2, {"data_source": {"cursor": 2}})
    monkeypatch.undo()
    assert load_run_state(tmp_path) == {"rollout_id": 1, "data_source": {"cursor": 1}}
