"""slime's `--custom-reward-post-process-path`: the rewards it returns replace the group baseline in training."""

from __future__ import annotations

import dataclasses

import torch

from slime.fsdp import FSDPConfig, FSDPPolicy


def test_batch_scores_replace_the_group_baseline(tiny_qwen3_dir, dist_ws1, make_batch):
    batch = make_batch()
    scores = tuple(float(i) - 1.5 for i in range(len(batch.samples)))
    policy = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir)), dist_ws1)
    normalised = policy.prepare(batch).advantages
    given = policy.prepare(dataclasses.replace(batch, scores=scores)).advantages
    # GRPO: every response token of sample i carries its score, not the group-normalised raw reward.
    for score, advantages in zip(scores, given, strict=True):
        assert torch.equal(advantages, torch.full_like(advantages, score))
    assert any(not torch.equal(a, b) for a, b in zip(normalised, given, strict=True))
