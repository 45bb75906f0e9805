"""Block FP8 quantization against a float64 reference, and the round-trip error bound.

Bound: with s = amax_block / 448 every |w / s| <= 448. Rounding to e4m3fn (3 mantissa bits) is off by at most
half an ulp: 2^-4 * |x| for normal x (|x| >= 2^-6), and half the subnormal step, 2^-10, below. Back in weight
units, |w - q * s| <= 2^-4 * |w| + 2^-10 * s, plus float32 rounding of the division and product (2^-20 * |w|
covers it). Summed over a block this is at most amax_block * (2^-4 + 2^-10 / 448 + 2^-20).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from slime.sync.block_fp8 import FP8_DTYPE, block_scales, dequantize_block_fp8, quantize_block_fp8
from slime.types import ConfigError, DataError


def _reference(w: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block loops in float64: the scales, and q as float64 (what e4m3fn rounding of w/scale gives)."""
    bn, bk = block
    n, k = w.shape
    w64 = w.double()
    scales = torch.empty(math.ceil(n / bn), math.ceil(k / bk), dtype=torch.float64)
    q = torch.empty_like(w64)
    for i in range(scales.shape[0]):
        for j in range(scales.shape[1]):
            tile = w64[i * bn : (i + 1) * bn, j * bk : (j + 1) * bk]
            amax = tile.abs().max().item()
            scale = float(torch.tensor(amax / 448.0, dtype=torch.float32)) if amax > 0 else 1.0
            scales[i, j] = scale
            x = (tile / scale).clamp(-448, 448)
            q[i * bn : (i + 1) * bn, j * bk : (j + 1) * bk] = x.float().to(FP8_DTYPE).double()
    return q, scales


def _bound(w: torch.Tensor, scales: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    n, k = w.shape
    s = scales.double().repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)[:n, :k]
    return 2.0**-4 * w.double().abs() + 2.0**-10 * s + 2.0**-20 * w.double().abs()


_shapes = st.tuples(st.integers(1, 70), st.integers(1, 70))
_blocks = st.tuples(st.integers(1, 32), st.integers(1, 32))


@st.composite
def _weights(draw: st.DrawFn) -> tuple[torch.Tensor, tuple[int, int]]:
    (n, k), block = draw(_shapes), draw(_blocks)
    seed = draw(st.integers(0, 2**31 - 1))
    log_scale = draw(st.floats(-30, 30))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 2.0**log_scale
    zero_rows = draw(st.integers(0, n))  # a band of zeros: whole zero blocks when it covers a block row
    w[:zero_rows] = 0
    if draw(st.booleans()):
        w = w.to(torch.bfloat16)
    return w, block


@given(_weights())
def test_matches_the_float64_reference(case: tuple[torch.Tensor, tuple[int, int]]) -> None:
    w, block = case
    q, scale = quantize_block_fp8(w, block)
    q_ref, scale_ref = _reference(w, block)
    assert q.dtype == FP8_DTYPE and q.shape == w.shape
    assert scale.dtype == torch.float32
    assert scale.shape == (math.ceil(w.shape[0] / block[0]), math.ceil(w.shape[1] / block[1]))
    torch.testing.assert_close(scale.double(), scale_ref, rtol=0, atol=0)
    # float32 division may land on the other side of a rounding midpoint: allow one fp8 step at most.
    diff = (q.double() - q_ref).abs()
    step = 2.0 ** (torch.floor(torch.log2(q_ref.abs().clamp(min=2**-6))) - 3)
    assert bool((diff <= step).all())
    assert (diff > 0).double().mean().item() < 0.01


@given(_weights())
def test_round_trip_within_the_derived_bound(case: tuple[torch.Tensor, tuple[int, int]]) -> None:
    w, block = case
    q, scale = quantize_block_fp8(w, block)
    deq = dequantize_block_fp8(q, scale, block, dtype=torch.float64)
    assert bool(torch.isfinite(deq).all())
    assert bool(((deq - w.double()).abs() <= _bound(w, scale, block)).all())


@given(_weights())
def test_ue8m0_scales_are_powers_of_two_and_keep_the_bound(case: tuple[torch.Tensor, tuple[int, int]]) -> None:
    w, block = case
    q, scale = quantize_block_fp8(w, block, scale_fmt="ue8m0")
    assert bool((torch.log2(scale) == torch.round(torch.log2(scale))).all())
    assert bool((scale >= block_scales(w, block)).all())
    deq = dequantize_block_fp8(q, scale, block, dtype=torch.float64)
    assert bool(((deq - w.double()).abs() <= _bound(w, scale, block)).all())


def test_default_block_is_128_and_ragged_edges_get_their_own_scale() -> None:
    w = torch.zeros(130, 257)
    w[128:, :] = 3.0  # second block row (2 rows only)
    w[:128, 256] = -7.0  # third block column (1 column only)
    q, scale = quantize_block_fp8(w)
    assert scale.shape == (2, 3)
    expected = torch.tensor([[448.0, 448.0, 7.0], [3.0, 3.0, 3.0]]) / 448  # float32 as the quantizer's
    assert torch.equal(scale, expected)
    assert torch.equal(dequantize_block_fp8(q, scale), w)


def test_all_zero_weight_gives_unit_scales_and_zeros() -> None:
    q, scale = quantize_block_fp8(torch.zeros(200, 3))
    assert torch.equal(scale, torch.ones(2, 1))
    assert torch.equal(q.float(), torch.zeros(200, 3))


def test_block_amax_maps_to_448() -> None:
    w = torch.tensor([[0.5, -2.0], [1.0, 0.25]])
    q, scale = quantize_block_fp8(w, (2, 2))
    assert q.float().abs().max().item() == 448.0
    assert scale.item() == pytest.approx(2.0 / 448)


def test_refuses_non_finite_non_2d_and_bad_blocks() -> None:
    with pytest.raises(DataError, match="'layer.w'.*inf or NaN"):
        quantize_block_fp8(torch.tensor([[1.0, float("nan")]]), name="layer.w")
    with pytest.raises(DataError, match=r"shape \(4,\)"):
        quantize_block_fp8(torch.ones(4))
    with pytest.raises(ConfigError, match="weight_block_size"):
        quantize_block_fp8(torch.ones(4, 4), (0, 128))
    with pytest.raises(ConfigError, match="scale_fmt"):
        quantize_block_fp8(torch.ones(4, 4), scale_fmt="e8m0")
    with pytest.raises(DataError, match=r"weight_scale_inv has shape \(1, 1\), expected \(2, 1\)"):
        dequantize_block_fp8(torch.zeros(129, 4, dtype=FP8_DTYPE), torch.ones(1, 1))
