"""Gradient accumulation: one micro-batch or four give the same update, for both loss reductions.

AdamW's first step is lr * g / (|g| + eps); with eps much larger than |g| that is a linear probe of the
gradient (lr / eps * g), so comparing updates compares gradients, without reaching into the optimizer.
"""

from __future__ import annotations

import pytest
import torch

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig

PROBE = {"lr": 1e3, "adam_eps": 1e3, "weight_decay": 0.0, "clip_grad": 0.0, "export_dtype": "float32"}


def update(config: FSDPConfig, batch, info) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    policy = FSDPPolicy(config, info)
    before = {n: t.clone() for n, t in policy.export_weights()}
    metrics = policy.train(0, batch)
    return {n: t - before[n] for n, t in policy.export_weights()}, dict(metrics)


@pytest.mark.parametrize("per_token", [False, True], ids=["per_sample", "per_token"])
def test_one_vs_four_micro_batches(per_token, tiny_qwen3_dir, dist_ws1, make_batch):
    batch = make_batch(8, seed=3)
    loss = LossConfig(calculate_per_token_loss=per_token, use_kl_loss=True, kl_loss_coef=0.05, entropy_coef=0.01)
    base = {"hf_checkpoint": str(tiny_qwen3_dir), "loss": loss, **PROBE}
    one, m1 = update(FSDPConfig(micro_batch_size=8, **base), batch, dist_ws1)
    four, m4 = update(FSDPConfig(micro_batch_size=2, **base), batch, dist_ws1)
    lengths = sorted(s.total_length for s in batch.samples)
    budget = lengths[-1] + lengths[-2]  # first-fit packs these 8 samples into several token-budgeted bins
    packed, mp = update(FSDPConfig(use_dynamic_batch_size=True, max_tokens_per_gpu=budget, **base), batch, dist_ws1)
    assert one.keys() == four.keys() == packed.keys()
    assert max(d.abs().max() for d in one.values()) > 1e-3  # the probe saw a real gradient
    for name in one:
        torch.testing.assert_close(four[name], one[name], atol=2e-6, rtol=1e-4, msg=name)
        torch.testing.assert_close(packed[name], one[name], atol=2e-6, rtol=1e-4, msg=name)
    for key in ("train/loss", "train/pg_loss", "train/entropy_loss", "train/grad_norm"):
        assert m4[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7)
        assert mp[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7)


def test_reductions_differ_when_lengths_differ(tiny_qwen3_dir, dist_ws1, make_batch):
    """Guard against a test that passes because both reductions collapsed into one."""
    batch = make_batch(8, seed=3)
    base = {"hf_checkpoint": str(tiny_qwen3_dir), **PROBE}
    sample, _ = update(FSDPConfig(loss=LossConfig(calculate_per_token_loss=False), **base), batch, dist_ws1)
    token, _ = update(FSDPConfig(loss=LossConfig(calculate_per_token_loss=True), **base), batch, dist_ws1)
    assert any(not torch.allclose(sample[n], token[n], atol=1e-5) for n in sample)
