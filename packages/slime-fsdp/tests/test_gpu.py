"""CUDA-only checks (skipped without a GPU): the varlen flash path equals per-sample SDPA, and a bf16 train
step on a tiny model runs and moves the weights."""

from __future__ import annotations

import math

import pytest
import torch

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.fsdp.packed_attention import _sdpa_per_segment, packed_attention_forward

pytestmark = pytest.mark.gpu


def test_varlen_matches_sdpa():
    torch.manual_seed(0)
    lengths = [5, 130, 1, 64]
    total = sum(lengths)
    q, k, v = (torch.randn(1, h, total, 64, device="cuda", dtype=torch.bfloat16) for h in (8, 2, 2))
    cu = torch.tensor([0, 5, 135, 136, 200], dtype=torch.int32, device="cuda")
    out, _ = packed_attention_forward(None, q, k, v, None, scaling=0.125, cu_seq_lens_q=cu, max_length_q=130)
    ref = _sdpa_per_segment(q.float(), k.float(), v.float(), cu.tolist(), 0.125, None)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_bf16_train_step(tiny_qwen3_dir, make_batch):
    if torch.distributed.is_initialized() and "nccl" not in str(torch.distributed.get_backend()):
        pytest.skip("this session's process group is CPU-only (gloo); run the gpu tests alone: pytest -m gpu")
    policy = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), device="cuda", lr=1e-3, export_dtype="float32"))
    before = dict(policy.export_weights())
    metrics = policy.train(0, make_batch(8, seed=60))
    assert math.isfinite(metrics["train/loss"]) and metrics["train/grad_norm"] > 0
    assert any(not torch.equal(t.cpu(), before[n].cpu()) for n, t in policy.export_weights())
    policy.offload()
    assert all(p.device.type == "cpu" for p in policy.model.parameters())
    policy.onload()
    assert math.isfinite(policy.train(1, make_batch(8, seed=61))["train/loss"])
