"""Export buckets and `ActorConfig` validation (no megatron needed)."""

from __future__ import annotations

import pytest
import torch

from slime.megatron import ActorConfig
from slime.megatron.export import iter_buckets
from slime.types import ConfigError


def test_buckets_respect_the_byte_bound_and_keep_order() -> None:
    named = [(f"w{i}", torch.zeros(n, dtype=torch.float32)) for i, n in enumerate([10, 20, 5, 100, 1, 1])]
    buckets = list(iter_buckets(iter(named), bucket_bytes=120))
    assert [n for b in buckets for n, _ in b] == [n for n, _ in named]
    for bucket in buckets:
        size = sum(t.numel() * 4 for _, t in bucket)
        assert size <= 120 or len(bucket) == 1  # an oversized tensor travels alone
    assert [len(b) for b in buckets] == [2, 1, 1, 1, 1] or [len(b) for b in buckets] == [2, 1, 1, 2]


def test_actor_config_validation() -> None:
    with pytest.raises(ConfigError, match="max_tokens_per_gpu"):
        ActorConfig(hf_checkpoint="x", use_dynamic_batch_size=True)
    with pytest.raises(ConfigError, match="rollout_temperature"):
        ActorConfig(hf_checkpoint="x", rollout_temperature=0.0)
    with pytest.raises(ConfigError, match="log_probs_chunk_size"):
        ActorConfig(hf_checkpoint="x", log_probs_chunk_size=0)
    config = ActorConfig(hf_checkpoint="x", use_dynamic_batch_size=True, max_tokens_per_gpu=4608)
    assert config.train_tokens_cap == 4608 and config.log_probs_tokens_cap == 4608
    assert ActorConfig(hf_checkpoint="x", max_tokens_per_gpu=10).train_tokens_cap is None


def test_actor_config_opd_teacher_rules() -> None:
    with pytest.raises(ConfigError, match="--opd-teacher-load DIR"):
        ActorConfig(hf_checkpoint="x", opd_type="megatron")
    with pytest.raises(ConfigError, match="Drop --opd-teacher-load"):
        ActorConfig(hf_checkpoint="x", opd_type="sglang", opd_teacher_load="t")
    with pytest.raises(ConfigError, match="Drop --opd-teacher-load"):
        ActorConfig(hf_checkpoint="x", opd_teacher_load="t")
    with pytest.raises(ConfigError, match="--opd-type sglang or --opd-type megatron"):
        ActorConfig(hf_checkpoint="x", opd_type="vllm")  # type: ignore[arg-type]  # the wrong value under test
    assert ActorConfig(hf_checkpoint="x", opd_type="megatron", opd_teacher_load="t").opd_teacher_load == "t"
