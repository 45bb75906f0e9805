"""slime.megatron.fused_elementwise: the functions it compiles compute what the eager ops do.

Compiled through inductor they are checked in the `fused` world (test_fusions.py): one training step equals eager.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from megatron.core.models.common.embeddings.rope_utils import _rotate_half

from slime.megatron.fused_elementwise import (
    CompiledRMSNorm,
    _rms_norm,
    _rotate,
    elementwise_fused,
    in_static_region,
    rotate,
    static_region,
)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotate_is_megatrons_rotate_half_arithmetic(interleaved: bool) -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(7, 1, 4, 16, generator=g)
    cos, sin = torch.randn(7, 1, 1, 16, generator=g), torch.randn(7, 1, 1, 16, generator=g)
    expected = (t * cos) + (_rotate_half(t, interleaved) * sin)
    assert torch.equal(_rotate(t, cos, sin, interleaved), expected)


def test_rms_norm_matches_the_float64_reference_and_torch() -> None:
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(5, 32, generator=g, dtype=torch.float64), torch.randn(32, generator=g, dtype=torch.float64)
    reference = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(_rms_norm(x, w, 1e-6), reference, rtol=1e-12, atol=1e-12)
    norm = torch.nn.RMSNorm(32, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(w.float())
    torch.testing.assert_close(_rms_norm(x.float(), norm.weight, 1e-6), norm(x.float()), rtol=1e-6, atol=1e-6)


def test_outside_the_static_region_the_eager_ops_run() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, 32, generator=g)
    norm, eager = CompiledRMSNorm(32, eps=1e-6), torch.nn.RMSNorm(32, eps=1e-6)
    assert not in_static_region() and torch.equal(norm(x), eager(x))
    cos, sin = torch.randn(6, 1, 32, generator=g), torch.randn(6, 1, 32, generator=g)
    assert torch.equal(rotate(x, cos, sin, False, compiled=True), _rotate(x, cos, sin, False))
    with static_region():
        assert in_static_region()
    assert not in_static_region()


def test_the_switch_follows_megatrons_bias_dropout_fusion() -> None:
    assert elementwise_fused(SimpleNamespace(bias_dropout_fusion=True))
    assert not elementwise_fused(SimpleNamespace(bias_dropout_fusion=False)) and not elementwise_fused(object())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (inductor's Triton kernels)")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")  # dynamo's tracing reads it
def test_compiled_norm_and_rotation_on_cuda_match_eager() -> None:
    g = torch.Generator(device="cuda").manual_seed(2)
    qkv = torch.randn(512, 1, 32, 128, device="cuda", generator=g, dtype=torch.bfloat16)
    for x in (torch.randn(512, 1, 1024, device="cuda", generator=g, dtype=torch.bfloat16), qkv[:, :, :16]):
        eager, compiled = torch.nn.RMSNorm(x.size(-1), eps=1e-6), CompiledRMSNorm(x.size(-1), eps=1e-6)
        eager, compiled = (m.to("cuda", torch.bfloat16) for m in (eager, compiled))
        inputs = [x.detach().clone().requires_grad_(True) for _ in range(2)]
        with static_region():
            outs = [m(i) for m, i in zip((eager, compiled), inputs, strict=True)]
        weight = torch.randn(outs[0].shape, device="cuda", generator=g, dtype=torch.bfloat16)
        for out in outs:
            (out.float() * weight.float()).sum().backward()
        torch.testing.assert_close(outs[1], outs[0], rtol=2e-2, atol=2e-2)  # bf16: one rounding apart
        torch.testing.assert_close(inputs[1].grad, inputs[0].grad, rtol=2e-2, atol=5e-2)
        torch.testing.assert_close(compiled.weight.grad, eager.weight.grad, rtol=2e-2, atol=2e-1)
    t = qkv[:, :, 16:24]  # a strided view, as the rotation gets the key
    cos, sin = (torch.randn(512, 1, 1, 128, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(2))
    for interleaved in (False, True):
        exact = _rotate(t.float(), cos.float(), sin.float(), interleaved)
        # inductor computes in fp32 and rounds once; eager bf16 rounds after every op
        with static_region():
            got = rotate(t, cos, sin, interleaved, compiled=True)
        torch.testing.assert_close(got.float(), exact, rtol=1e-2, atol=2e-2)
        torch.testing.assert_close(_rotate(t, cos, sin, interleaved).float(), exact, rtol=2e-2, atol=6e-2)
