"""Block-wise FP8 (e4m3fn) quantization of one 2-D weight, in the layout of HF / SGLang block-FP8 checkpoints.

A weight `w` [N, K] is cut into blocks of `block_size` = (bn, bk) (the last row / column of blocks may be
ragged). Each block gets `scale = amax(|block|) / 448` and `q = clamp(w / scale, -448, 448)` cast to
`torch.float8_e4m3fn`; the checkpoint stores `q` as `<prefix>.weight` and the scales as
`<prefix>.weight_scale_inv` [ceil(N/bn), ceil(K/bk)] float32, so `w ~= q.float() * scale_inv` broadcast over the
blocks (SGLang's `block_quant_dequant`). An all-zero block gets scale 1 (q = 0), never NaN. With `scale_fmt`
"ue8m0" the scale is rounded up to a power of two (DeepGEMM's format). It does not decide which weights are
quantized (`slime.sync.fp8_rollout`) and does not move tensors between devices.
"""

from __future__ import annotations

import math

import torch

from slime.types import ConfigError, DataError

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
"""Largest finite e4m3fn value (`torch.finfo(torch.float8_e4m3fn).max`)."""
DEFAULT_BLOCK_SIZE = (128, 128)
"""DeepSeek-V3 / Qwen3-FP8 `weight_block_size`."""
SCALE_FORMATS = ("float32", "ue8m0")


def _check_block(block_size: tuple[int, int]) -> tuple[int, int]:
    if len(block_size) != 2 or any(int(b) != b or b < 1 for b in block_size):
        raise ConfigError(f"`weight_block_size` is {list(block_size)!r}; pass two positive integers, e.g. [128, 128].")
    return int(block_size[0]), int(block_size[1])


def _check_weight(weight: torch.Tensor, name: str) -> None:
    if weight.dim() != 2:
        raise DataError(
            f"weight {name!r} has shape {tuple(weight.shape)}; block FP8 quantizes 2-D weights only "
            "(leave it out of the quantized set)."
        )
    if not (weight.is_floating_point() and weight.dtype != FP8_DTYPE):
        raise DataError(f"weight {name!r} has dtype {weight.dtype}; pass a float16/bfloat16/float32 weight.")


def _blocked(x: torch.Tensor, block_size: tuple[int, int]) -> torch.Tensor:
    """`x` [N, K] zero-padded to whole blocks and viewed as [N/bn, bn, K/bk, bk]."""
    bn, bk = block_size
    n, k = x.shape
    pad_n, pad_k = -n % bn, -k % bk
    if pad_n or pad_k:
        x = torch.nn.functional.pad(x, (0, pad_k, 0, pad_n))
    return x.view(x.shape[0] // bn, bn, x.shape[1] // bk, bk)


def block_scales(
    weight: torch.Tensor,
    block_size: tuple[int, int] = DEFAULT_BLOCK_SIZE,
    *,
    scale_fmt: str = "float32",
    name: str = "weight",
) -> torch.Tensor:
    """The per-block scale (`weight_scale_inv`) [ceil(N/bn), ceil(K/bk)] float32 of a 2-D weight.

    Raises `DataError` when the weight holds inf or NaN (`name` labels the error).
    """
    if scale_fmt not in SCALE_FORMATS:
        raise ConfigError(f"`scale_fmt` is {scale_fmt!r}; pass one of {', '.join(SCALE_FORMATS)}.")
    amax = _blocked(weight.float().abs(), _check_block(block_size)).amax(dim=(1, 3))
    if not bool(torch.isfinite(amax).all()):
        raise DataError(f"weight {name!r} holds inf or NaN values; FP8 cannot represent them (check the trainer).")
    scale = amax / FP8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # zero blocks (and underflow): q = 0 anyway
    if scale_fmt == "ue8m0":  # round up to a power of two, exactly (frexp: scale = m * 2^e, m in [0.5, 1))
        mantissa, exponent = torch.frexp(scale)
        scale = torch.ldexp(torch.ones_like(scale), exponent - (mantissa == 0.5).to(exponent.dtype))
    return scale


def quantize_block_fp8(
    weight: torch.Tensor,
    block_size: tuple[int, int] = DEFAULT_BLOCK_SIZE,
    *,
    scale_fmt: str = "float32",
    name: str = "weight",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize `weight` [N, K] -> (q [N, K] float8_e4m3fn, scale_inv [ceil(N/bn), ceil(K/bk)] float32).

    `name` only labels errors. Raises `DataError` for a non-2-D or non-float weight, or one holding inf / NaN.
    Both outputs are on `weight`'s device; the arithmetic is float32 whatever the input dtype.
    """
    _check_weight(weight, name)
    block_size = _check_block(block_size)
    scale = block_scales(weight, block_size, scale_fmt=scale_fmt, name=name)
    n, k = weight.shape
    blocks = _blocked(weight.float(), block_size)
    q = (blocks / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    q = q.view(blocks.shape[0] * block_size[0], blocks.shape[2] * block_size[1])[:n, :k].contiguous()
    return q, scale.contiguous()


def dequantize_block_fp8(
    q: torch.Tensor,
    scale_inv: torch.Tensor,
    block_size: tuple[int, int] = DEFAULT_BLOCK_SIZE,
    *,
    dtype: torch.dtype = torch.float32,
    name: str = "weight",
) -> torch.Tensor:
    """`q.float() * scale_inv` broadcast over blocks, cast to `dtype` (SGLang's `block_quant_dequant`).

    Raises `DataError` when `scale_inv`'s shape is not [ceil(N/bn), ceil(K/bk)] for `q` [N, K].
    """
    bn, bk = _check_block(block_size)
    if q.dim() != 2:
        raise DataError(f"FP8 weight {name!r} has shape {tuple(q.shape)}; expected a 2-D tensor.")
    n, k = q.shape
    expected = (math.ceil(n / bn), math.ceil(k / bk))
    if tuple(scale_inv.shape) != expected:
        raise DataError(
            f"{name!r}: weight_scale_inv has shape {tuple(scale_inv.shape)}, expected {expected} for a weight of "
            f"shape {(n, k)} with weight_block_size {[bn, bk]}; check the checkpoint's quantization_config."
        )
    full = scale_inv.float().repeat_interleave(bn, dim=0).repeat_interleave(bk, dim=1)[:n, :k]
    return (q.float() * full).to(dtype)
