"""slime.megatron.core_attention on a GPU: the direct FlashAttention path gives torch's `varlen_attn` output bit for
bit (gradients up to the kernel's own run-to-run atomics), and the exact per-sequence reference within bf16 rounding
(CPU runs skip: the kernels are CUDA's)."""

from __future__ import annotations

import pytest
import torch

from slime.megatron.core_attention import _reference_varlen, varlen_causal_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (FlashAttention kernels)")


def _packed(lengths: list[int], heads: int = 16, kv_heads: int = 8, dim: int = 128):
    g = torch.Generator(device="cuda").manual_seed(0)
    total = sum(lengths)
    q, k, v = (torch.randn(total, h, dim, device="cuda", generator=g, dtype=torch.bfloat16)
               for h in (heads, kv_heads, kv_heads))  # fmt: skip
    cu = torch.tensor([0, *lengths], device="cuda").cumsum(0).to(torch.int32)
    return [t.requires_grad_(True) for t in (q, k, v)], cu


@pytest.mark.parametrize("lengths", [[37, 300, 5, 130], [1], [64, 64, 64, 0]])  # an empty one: padding bounds
def test_direct_flash_path_equals_torch_varlen_attn(lengths: list[int]) -> None:
    from torch.nn.attention.varlen import varlen_attn

    (q, k, v), cu = _packed(lengths)
    scale, longest = 128**-0.5, max(lengths)
    ours = varlen_causal_attention(q, k, v, cu, longest, scale)
    refs = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    theirs = varlen_attn(*refs, cu, cu, longest, longest, scale=scale, window_size=(-1, 0))
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    for mine, ref in zip((q, k, v), refs, strict=True):
        # FlashAttention's backward accumulates dq with atomics: run to run it differs in the last bf16 bit
        torch.testing.assert_close(mine.grad, ref.grad, atol=1e-2, rtol=1e-2)
    exact = _reference_varlen(*(t.detach().float() for t in (q, k, v)), cu, scale)
    torch.testing.assert_close(ours.float(), exact, atol=2e-2, rtol=2e-2)
