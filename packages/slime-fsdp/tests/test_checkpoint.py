"""DCP checkpoints: a save/load round trip resumes bit-exactly, and a crash mid-save keeps the previous one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slime.fsdp import FSDPConfig, FSDPPolicy, checkpoint  # checkpoint: the module, for resolve() and the crash
from slime.loss import LossConfig
from slime.types import ConfigError, DataError


@pytest.fixture
def config(tiny_qwen3_dir, tmp_path) -> FSDPConfig:
    return FSDPConfig(
        hf_checkpoint=str(tiny_qwen3_dir), save=str(tmp_path / "ckpt"), lr=1e-2, min_lr=1e-3,
        lr_decay_style="cosine", lr_warmup_iters=1, lr_decay_iters=6, num_steps_per_rollout=2,
        loss=LossConfig(use_kl_loss=True, kl_loss_coef=0.1), export_dtype="float32",
    )  # fmt: skip


def test_round_trip_resumes_bit_exactly(config, dist_ws1, make_batch):
    b0, b1 = make_batch(8, seed=10), make_batch(8, seed=11, rollout_id=1)
    first = FSDPPolicy(config, dist_ws1)
    first.train(0, b0)
    path = first.save_checkpoint(0)
    assert path.endswith("iter_0000000")
    expected = dict(first.train(1, b1))
    expected_weights = dict(first.export_weights())

    resumed = FSDPPolicy(dataclasses.replace(config, load=config.save), dist_ws1)
    assert (resumed.start_rollout_id, resumed.global_step) == (1, 2)
    got = dict(resumed.train(1, b1))
    for key in ("train/loss", "train/kl_loss", "train/grad_norm", "train/lr"):
        assert got[key] == expected[key], key
    for name, tensor in resumed.export_weights():
        assert torch.equal(tensor, expected_weights[name]), name


def test_crash_mid_save_keeps_previous(config, dist_ws1, make_batch, monkeypatch):
    policy = FSDPPolicy(config, dist_ws1)
    policy.train(0, make_batch(8, seed=12))
    policy.save_checkpoint(0)
    saved = dict(policy.export_weights())
    policy.train(1, make_batch(8, seed=13, rollout_id=1))

    def crash(*args, **kwargs):
        raise OSError("disk vanished")

    monkeypatch.setattr(checkpoint, "_publish", crash)  # every shard written, nothing published yet
    with pytest.raises(OSError):
        policy.save_checkpoint(1)
    monkeypatch.undo()
    assert checkpoint.resolve(config.save).name == "iter_0000000"
    reloaded = FSDPPolicy(dataclasses.replace(config, load=config.save), dist_ws1)
    assert reloaded.start_rollout_id == 1
    assert all(torch.equal(t, saved[n]) for n, t in reloaded.export_weights())
    # The next save clears the leftovers and moves the tracker.
    assert policy.save_checkpoint(1).endswith("iter_0000001")
    assert checkpoint.resolve(config.save).name == "iter_0000001"
    assert not any(p.name.startswith(".tmp") for p in checkpoint.iteration_dir(config.save, 0).parent.iterdir())


def test_missing_checkpoint(config, dist_ws1, tmp_path):
    fresh = FSDPPolicy(dataclasses.replace(config, load=str(tmp_path / "empty")), dist_ws1)
    assert fresh.start_rollout_id == 0  # slime: --load without a checkpoint starts from --hf-checkpoint
    with pytest.raises(DataError, match="no checkpoint"):
        fresh.load_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="save"):
        FSDPPolicy(dataclasses.replace(config, save=None), dist_ws1).save_checkpoint(0)
