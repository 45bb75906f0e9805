"""Megatron's LR schedule in optimizer steps, gradient clipping and optimizer-state resets."""

from __future__ import annotations

import math

import pytest
import torch

from slime.fsdp import FSDPConfig, learning_rate
from slime.fsdp.optimizer import build_optimizer, clip_grad_norm, reset_optimizer_states


def cfg(**kw) -> FSDPConfig:
    return FSDPConfig(hf_checkpoint="unused", **kw)


def test_constant_with_warmup():
    c = cfg(lr=1.0, lr_warmup_iters=4, lr_warmup_init=0.2)
    assert [learning_rate(s, c) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_cosine_and_linear():
    c = cfg(lr=1.0, min_lr=0.1, lr_decay_style="cosine", lr_warmup_iters=2, lr_decay_iters=12)
    assert learning_rate(2, c) == pytest.approx(1.0)
    assert learning_rate(7, c) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(12, c) == pytest.approx(0.1) and learning_rate(100, c) == pytest.approx(0.1)
    lin = cfg(lr=1.0, min_lr=0.0, lr_decay_style="linear", lr_decay_iters=10)
    assert [learning_rate(s, lin) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])


def test_clip_and_reset():
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0, 0.0])
    assert clip_grad_norm(params, 1.0) == pytest.approx(5.0)
    assert torch.linalg.vector_norm(torch.cat([p.grad for p in params])) == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm(params, 0.0) == pytest.approx(1.0, rel=1e-5)  # 0: report only

    opt = build_optimizer(params, cfg(lr=0.1))
    opt.step()
    assert all(float(v.abs().sum()) > 0 for s in opt.state.values() for v in s.values())
    reset_optimizer_states(opt)
    assert all(float(v.abs().sum()) == 0 for s in opt.state.values() for v in s.values())
