"""Gradient-accumulation fusion without apex: the decoder's linear layers accumulate their weight gradient straight
into Megatron's fp32 `main_grad`.

Unfused, each weight-gradient GEMM writes a bf16 gradient that DDP's hook then adds into the fp32 `main_grad`, once
per parameter and micro-batch: 3,600 adds (49 ms) in a step of the Qwen3-0.6B shape on an H100, plus the bf16
round trip. Fused, one cuBLAS GEMM reads bf16 inputs and accumulates into the fp32 buffer (beta = 1; torch's
`addmm(out_dtype=torch.float32)`), which is also more exact (no bf16 rounding of each micro-batch's gradient).

Megatron has this fusion (`--gradient-accumulation-fusion`, on by default in Megatron's own arguments), but only
through apex's `fused_weight_gradient_mlp_cuda` extension or TransformerEngine; without them it refuses the flag,
so `training_configs` keeps Megatron's switch off. Here the local layer spec builds `FusedWgradColumnParallelLinear`
and `FusedWgradRowParallelLinear` instead (`layer_spec.local_block_spec(wgrad_fusion=True)`): Megatron's classes
with the same parameters, names and forward; only where the weight's gradient goes differs. The protocol with
Megatron's DDP is Megatron's own: the gradient is added to `weight.main_grad`, autograd receives an unused
placeholder, and `weight.grad_added_to_main_grad = True` tells DDP's hook not to add it.

Covered: a trainable weight that has a `main_grad` (DDP-wrapped training), no sequence-parallel input gather (row-
parallel layers always qualify; column-parallel ones under `--sequence-parallel` do not), no deferred weight
gradients. Anything else runs Megatron's implementation unchanged. The output layer, which `GPTModel` builds itself,
is fused by `fuse_output_layer` where its weight is its own; a weight tied to the embedding (Megatron marks it
`zero_out_wgrad`: two layers add to one gradient) stays on Megatron's path. Not covered: TransformerEngine's layers
(they fuse on their own).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear


def accumulate_wgrad(main_grad: torch.Tensor, grad_output: torch.Tensor, inputs: torch.Tensor) -> None:
    """`main_grad += grad_output^T @ inputs` for 2-D `grad_output` `[N, out]` and `inputs` `[N, in]`, in place.

    On CUDA with half-precision inputs and an fp32 `main_grad` this is one GEMM with fp32 output and beta = 1;
    elsewhere (the CPU, fp32 models) the inputs are promoted to `main_grad`'s dtype first."""
    half = grad_output.dtype in (torch.bfloat16, torch.float16)
    if main_grad.is_cuda and half and main_grad.dtype == torch.float32:
        torch.addmm(main_grad, grad_output.t(), inputs, out_dtype=torch.float32, out=main_grad)
    else:
        main_grad.addmm_(grad_output.t().to(main_grad.dtype), inputs.to(main_grad.dtype))


def gradient_placeholder(weight: torch.Tensor) -> torch.Tensor | None:
    """What autograd receives for a weight whose gradient went into `main_grad`: None outside DDP; under DDP an
    uninitialised tensor (Megatron's protocol: the hook must still run, for overlapped gradient reduction), with
    `grad_added_to_main_grad` set so that the hook does not add it."""
    if not hasattr(weight, "grad_added_to_main_grad"):
        return None
    weight.grad_added_to_main_grad = True
    return torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)


class _FusedWgradLinear(torch.autograd.Function):
    """`input @ weight^T (+ bias)`; backward accumulates the weight gradient into `weight.main_grad` and, for a
    column-parallel layer without sequence parallelism, all-reduces the input gradient over tensor parallelism."""

    @staticmethod
    def forward(ctx, input, weight, bias, allreduce_dgrad, tp_group):  # noqa: ANN001, ANN205, A002
        ctx.save_for_backward(input, weight)
        ctx.main_grad = weight.main_grad  # read now: a CUDA graph's parameter aliases carry it only as attributes
        ctx.use_bias, ctx.allreduce_dgrad, ctx.tp_group = bias is not None, allreduce_dgrad, tp_group
        output = torch.matmul(input, weight.t())
        return output if bias is None else output + bias

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001, ANN205
        input, weight = ctx.saved_tensors  # noqa: A001
        grad_input = grad_output.matmul(weight)
        handle = None
        if ctx.allreduce_dgrad:  # overlapped with the weight-gradient GEMM below
            handle = dist.all_reduce(grad_input, group=ctx.tp_group, async_op=True)
        grad_2d = grad_output.reshape(-1, grad_output.size(-1))
        accumulate_wgrad(ctx.main_grad, grad_2d, input.reshape(-1, input.size(-1)))
        grad_bias = grad_2d.sum(0) if ctx.use_bias else None
        if handle is not None:
            handle.wait()
        return grad_input, gradient_placeholder(weight), grad_bias, None, None


def _fusable(weight: torch.Tensor, kwargs: dict[str, Any]) -> bool:
    return (
        weight.requires_grad
        and hasattr(weight, "main_grad")
        and not kwargs.get("sequence_parallel", False)
        and kwargs.get("grad_output_buffer") is None
        and not getattr(weight, "zero_out_wgrad", False)  # a shared weight: Megatron's protocol differs there
    )


class _FusedWgrad:
    """Mixin over a Megatron linear: `_forward_impl` takes the fused path where it applies (`_fusable`)."""

    def _forward_impl(self, input, weight, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202, A002
        if args or not _fusable(weight, kwargs):
            return super()._forward_impl(input, weight, *args, **kwargs)
        return _FusedWgradLinear.apply(input, weight, kwargs["bias"], kwargs["allreduce_dgrad"], kwargs["tp_group"])


class FusedWgradColumnParallelLinear(_FusedWgrad, ColumnParallelLinear):
    """Megatron's `ColumnParallelLinear` whose weight gradient accumulates into `main_grad` (module docstring)."""


class FusedWgradRowParallelLinear(_FusedWgrad, RowParallelLinear):
    """Megatron's `RowParallelLinear` whose weight gradient accumulates into `main_grad` (module docstring)."""


def fuse_output_layer(gpt: torch.nn.Module) -> None:
    """Give `gpt`'s output layer (Megatron's `ColumnParallelLinear`, built by `GPTModel` outside the layer spec) the
    fused weight gradient: that one instance's class becomes `FusedWgradColumnParallelLinear`, which adds no state and
    overrides only `_forward_impl`. Other heads (the critic's value head) are left as they are."""
    layer = getattr(gpt, "output_layer", None)
    if type(layer) is ColumnParallelLinear:
        layer.__class__ = FusedWgradColumnParallelLinear
