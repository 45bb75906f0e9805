"""Logits only for the rows that predict a response token: the model's hidden states are cut down to those rows
before the output layer, instead of computing the full `[T, V]` logits and selecting rows afterwards.

The loss and the log-probs read only response rows (`PackedMicroBatch.logit_index`), which are about half of a
packed row in RL batches (prompt tokens are never scored). The output layer is the widest GEMM of a small model
(1024 x 152k for Qwen3-0.6B), and its `[T, V]` logits, their gradient and the scatter of that gradient were the
largest tensors of a micro-batch; computed on the response rows only, all of that shrinks with the row count.

Two ways in, same result:

- eager (`rows_before_output_layer`): a forward pre-hook on `GPTModel.output_layer` selects the rows of its input,
  so `GPTModel` returns `[1, R, V]`;
- CUDA graphs (`trunk_only`, `output_on_rows`): the graph captures the model up to the final norm (its output layer
  passes the hidden states through), and the output layer runs eagerly on the selected rows: three GEMMs, so no
  host cost worth a graph, and the row count may vary from micro-batch to micro-batch.

Where it does not apply (`applies`), the full logits are computed and rows selected afterwards as before: under
sequence parallelism the hidden states are split over TP ranks by sequence (the output layer gathers them), and
with multi-token prediction the output layer sees several stacked sequences. Pipeline stages other than the last
have no output layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


class _SelectRows(torch.autograd.Function):
    """`x[0].index_select(0, index)` of a `[1, T, ...]` tensor, for an index without repeats (a row predicts at most
    one token), whose backward copies the rows' gradients instead of adding them: torch's (`index_add_`) adds with
    bf16 atomics, 2 ms per 4k micro-batch of 152k-wide logit rows on an H100. With a `sink` (a CUDA graph's
    `GradRows`) the gradient is written into the captured backward's own input buffer, which saves zeroing a fresh
    `[T, ...]` tensor and copying it there."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, sink: Any) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(index)
        ctx.shape, ctx.sink = x.shape, sink
        return x[0].index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (index,) = ctx.saved_tensors
        if ctx.sink is not None:
            return ctx.sink.write(index, grad), None, None
        full = grad.new_zeros(ctx.shape)
        full[0].index_copy_(0, index, grad)
        return full, None, None


def select_rows(x: torch.Tensor, index: torch.Tensor, sink: Any = None) -> torch.Tensor:
    """Rows `index` (no repeats) of the `[1, T, ...]` tensor `x`, differentiable (see `_SelectRows`); `sink`: a
    `cuda_graphs.GradRows` to write the gradient into."""
    return _SelectRows.apply(x, index, sink)


def gpt_model(model: torch.nn.Module) -> torch.nn.Module:
    """The `GPTModel` inside a (DDP-)wrapped model chunk."""
    while not hasattr(model, "decoder") and hasattr(model, "module"):
        model = model.module
    return model


def applies(gpt: torch.nn.Module) -> bool:
    """Whether the rows can be selected before `gpt`'s output layer (see the module docstring)."""
    config = gpt.config
    return bool(getattr(gpt, "post_process", False) and not config.sequence_parallel and config.mtp_num_layers is None)


@contextlib.contextmanager
def rows_before_output_layer(gpt: torch.nn.Module, index: torch.Tensor) -> Iterator[None]:
    """Inside, `gpt`'s output layer computes only rows `index` of its `[T, 1, H]` input: the model returns
    `[1, len(index), V]`."""

    def hook(module, args, kwargs):  # noqa: ANN001, ANN202
        hidden = args[0]
        rows = select_rows(hidden.transpose(0, 1), index).unsqueeze(1)
        return (rows, *args[1:]), kwargs

    handle = gpt.output_layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _pass_through(hidden_states: torch.Tensor, weight=None, runtime_gather_output=None):  # noqa: ANN001, ANN202
    return hidden_states, None


@contextlib.contextmanager
def trunk_only(gpt: torch.nn.Module) -> Iterator[None]:
    """Inside, `gpt` returns its final hidden states `[1, T, H]` instead of logits (its output layer passes them
    through): what a CUDA graph captures, the output layer then running on the selected rows (`output_on_rows`)."""
    layer = gpt.output_layer
    layer.forward = _pass_through  # an instance attribute: nn.Module.__call__ looks `forward` up on the instance
    try:
        yield
    finally:
        del layer.forward


def output_on_rows(gpt: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """`gpt`'s output layer on hidden rows `[R, H]` (taken from `trunk_only`'s output): logits `[1, R, V/tp]`, as
    `GPTModel` computes them for a sequence (with the tied embedding as weight where the model shares it)."""
    weight = gpt.shared_embedding_or_output_weight() if gpt.share_embeddings_and_output_weights else None
    logits, _ = gpt.output_layer(rows.unsqueeze(1), weight=weight)
    return logits.transpose(0, 1)
