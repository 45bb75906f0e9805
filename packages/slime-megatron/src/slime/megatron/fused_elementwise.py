"""The local spec's `torch.compile`'d elementwise ops (RMSNorm, the packed rows' rotate-half RoPE), and when they
are used.

Eager, each of these is several kernels forward and more backward; inductor fuses each into one or two. They are
compiled for static shapes and used only inside `static_region()`, which `slime.megatron.cuda_graphs` enters for its
warm-up and capture: there every micro-batch has the same shape, the compiled code runs once per shape and the
replays launch its kernels with no host cost at all. Elsewhere (forward-only passes, eager training, the CPU) the
eager ops run, for two measured reasons (H100, the 0.6B shape):

- in an eager step that the host bounds, compiled calls lose: their guards cost more host time than the kernels they
  save (`training_configs.transformer_overrides`);
- compiled for dynamic shapes (which varying micro-batches would need), inductor's RMSNorm kernels were slower than
  torch's own (0.19 s against 0.17 s a step); static ones are not. Static compiles outside the graphs would
  recompile for every new micro-batch length, past dynamo's limit.

`elementwise_fused(config)` is the build-time switch (the layer spec builds `CompiledRMSNorm`, the rotation may use
the compiled kernel); it follows Megatron's own compiled fusions (SwiGLU, bias-dropout-add).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

_STATIC = contextvars.ContextVar("slime_megatron_static_region", default=False)


def elementwise_fused(config) -> bool:
    """Whether the model has the compiled versions: when Megatron's own compiled fusions are on (its
    `bias_dropout_fusion`, set by `training_configs.transformer_overrides`), so one switch governs them all."""
    return bool(getattr(config, "bias_dropout_fusion", False))


@contextlib.contextmanager
def static_region() -> Iterator[None]:
    """Inside, the compiled kernels run (shapes are static here: see the module docstring)."""
    token = _STATIC.set(True)
    try:
        yield
    finally:
        _STATIC.reset(token)


def in_static_region() -> bool:
    """Whether the caller is inside `static_region()`."""
    return _STATIC.get()


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # HF Qwen3RMSNorm's arithmetic: normalise in (at least) fp32, cast back, then scale
    x32 = x.to(torch.promote_types(x.dtype, torch.float32))
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def _rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    # Megatron's `_rotate_half` and bshd rotation, written out so that inductor sees one expression
    if interleaved:
        x1, x2 = t[..., ::2], t[..., 1::2]
        rotated = torch.stack((-x2, x1), dim=-1).view(t.shape)
    else:
        x1, x2 = torch.chunk(t, 2, dim=-1)
        rotated = torch.cat((-x2, x1), dim=-1)
    return (t * cos) + (rotated * sin)


_compiled_rms_norm = torch.compile(_rms_norm, dynamic=False)
_compiled_rotate = torch.compile(_rotate, dynamic=False)


def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool, *, compiled: bool) -> torch.Tensor:
    """Megatron's rotate-half rotation of `t` (bit for bit eagerly); with `compiled`, inside `static_region()`, one
    fused kernel (eager: five, and the backward as many; 0.17 s of kernels in a 1.4 s H100 step of the 0.6B shape)."""
    return (_compiled_rotate if compiled and in_static_region() else _rotate)(t, cos, sin, interleaved)


class CompiledRMSNorm(torch.nn.RMSNorm):
    """`torch.nn.RMSNorm`, computed inside `static_region()` by one compiled function: forward and backward (the weight
    gradient's reduction included) as fused kernels. An H100 profile of the 0.6B step put torch's own RMSNorm
    backward at 12 % of the GPU time, most of it the weight-gradient reduction over the q/k norms' 16 x 4096 rows of
    128. Outside the region it is torch's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not in_static_region():
            return super().forward(x)
        # as 2-D contiguous rows: the q/k norms' inputs are strided views of the fused QKV projection, and dynamo
        # guards on strides; torch's own kernel makes the same copy
        shape = x.shape
        return _compiled_rms_norm(x.reshape(-1, shape[-1]).contiguous(), self.weight, self.eps).view(shape)
