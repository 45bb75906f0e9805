"""The local spec's `torch.compile`'d elementwise ops (RMSNorm, the packed rows' rotate-half RoPE), and the switch
that selects them.

Eager, each of these is several kernels forward and more backward; inductor fuses each into one or two. In an eager
step that the host bounds the compiled calls lose (their guards cost more host time than the kernels they save: see
`training_configs.transformer_overrides`), so they follow Megatron's own compiled fusions: on next to TE, or under
CUDA graphs (`slime.megatron.cuda_graphs`), where the host cost is paid once, at capture. This module does not decide
when that is; `elementwise_fused` reads the decision from the model's config.
"""

from __future__ import annotations

import torch


def elementwise_fused(config) -> bool:
    """Whether the compiled versions are used: when Megatron's own compiled fusions are (its `bias_dropout_fusion`,
    set by `training_configs.transformer_overrides`), so one switch governs every compiled elementwise op."""
    return bool(getattr(config, "bias_dropout_fusion", False))


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


# dynamic=True: every norm weight is a view at its own offset into DDP's flat parameter buffer, and the q/k norms'
# inputs have their own shapes; specialised per offset, dynamo recompiled past its limit (an H100 run) and fell back
# to eager for the rest
rms_norm = torch.compile(_rms_norm, dynamic=True)
"""`_rms_norm` compiled: forward and backward (the weight gradient's reduction included) as fused kernels. An H100
profile of the 0.6B step put torch's own RMSNorm backward at 12 % of the GPU time, most of it the weight-gradient
reduction over the q/k norms' 16 x 4096 rows of 128."""

rotate = torch.compile(_rotate, dynamic=True)  # query and key: views at different offsets of the QKV output
"""`_rotate` compiled: the gathers' products, the halves' swap and the sum in one kernel (eager: five, and the
backward as many; 0.17 s of kernels in a 1.4 s H100 step of the 0.6B shape)."""


class CompiledRMSNorm(torch.nn.RMSNorm):
    """`torch.nn.RMSNorm` computed by `rms_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # as 2-D contiguous rows: the q/k norms' inputs are strided views of the fused QKV projection, and dynamo
        # guards on strides; torch's own kernel makes the same copy
        shape = x.shape
        return rms_norm(x.reshape(-1, shape[-1]).contiguous(), self.weight, self.eps).view(shape)
