"""Run packed micro-batches through Megatron's pipeline schedules: forward-only (log-probs, values) or train.

Both go through `get_forward_backward_func()`, so pipeline parallelism uses Megatron's own schedules. The
last pipeline stage turns each micro-batch's output into response-token results: vocab-parallel log-probs
(and entropy) of the actor, or the critic's values. Forward-only results are broadcast from the last stage
to the other stages of the pipeline, so every rank ends with the same per-sample tensors. This module does not
decide batching (`packing`) or what the loss is (the caller's `loss_fn`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from megatron.core.pipeline_parallel import get_forward_backward_func
from slime.megatron import _megatron_globals as mg
from slime.megatron import response_rows
from slime.megatron.cuda_graphs import TrainGraphs
from slime.megatron.packing import PackedMicroBatch
from slime.megatron.response_rows import select_rows
from slime.megatron.vocab_parallel import vocab_parallel_log_probs

LossFn = Callable[[PackedMicroBatch, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""(micro-batch, head outputs {"log_probs", "entropy"} or {"values"}) -> (loss, detached metrics)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HeadSpec:
    """How the last stage reads a micro-batch's output."""

    kind: str = "actor"
    """"actor": logits -> log-probs (+ entropy); "critic": `[.., 1]` values."""
    temperature: float = 1.0
    vocab_size: int | None = None
    """True vocabulary size (padding columns beyond it are ignored)."""
    chunk_size: int = 1024
    with_entropy: bool = False


def head_outputs(
    output: torch.Tensor, mb: PackedMicroBatch, head: HeadSpec, *, selected: bool
) -> dict[str, torch.Tensor]:
    """Response-token results of one micro-batch from the model output `[1, T, V/tp]` (or `[1, T, 1]`), or from its
    response rows `[1, R, ...]` when they were `selected` before the output layer (`slime.megatron.response_rows`)."""
    rows = output[0] if selected else select_rows(output, mb.logit_index)
    if head.kind == "critic":
        return {"values": rows[:, 0].float()}
    vocab_start = mg.tp_rank() * rows.size(-1)
    log_probs, entropy = vocab_parallel_log_probs(
        rows,
        mb.target_ids,
        vocab_start=vocab_start,
        vocab_size=head.vocab_size,
        temperature=head.temperature,
        group=mg.tp_group() if mg.tp_size() > 1 else None,
        chunk_size=head.chunk_size,
        with_entropy=head.with_entropy,
    )
    out = {"log_probs": log_probs}
    if entropy is not None:
        out["entropy"] = entropy
    return out


def _model_output(model, mb: PackedMicroBatch, graphs: TrainGraphs | None) -> tuple[torch.Tensor, bool]:
    """The model's output for `mb` and whether it holds the response rows only (`slime.megatron.response_rows`):
    replayed graphs plus the output layer on those rows, the eager model with the rows selected before its output
    layer, or (where that does not apply) the full logits."""
    gpt = response_rows.gpt_model(model)
    if graphs is not None and graphs.accepts(mb):
        hidden, sink = graphs(mb)
        return response_rows.output_on_rows(gpt, select_rows(hidden, mb.logit_index, sink)), True
    kwargs = {"input_ids": mb.tokens, "position_ids": mb.position_ids, "attention_mask": None}
    if not response_rows.applies(gpt):
        return model(**kwargs, packed_seq_params=mb.packed_seq_params), False
    with response_rows.rows_before_output_layer(gpt, mb.logit_index):
        return model(**kwargs, packed_seq_params=mb.packed_seq_params), True


def _forward_step_factory(head: HeadSpec, loss_fn: LossFn | None, graphs: TrainGraphs | None):
    def forward_step(data_iterator, model):
        mb: PackedMicroBatch = next(data_iterator)
        output, selected = _model_output(model, mb, graphs)

        def loss_func(output_tensor: torch.Tensor):
            outputs = head_outputs(output_tensor, mb, head, selected=selected)
            if loss_fn is None:  # forward-only: a zero "loss" and the detached results
                zero = output_tensor.new_zeros(())
                return zero, torch.tensor(1, dtype=torch.int), {k: v.detach() for k, v in outputs.items()}
            loss, metrics = loss_fn(mb, outputs)
            return loss, torch.tensor(1, dtype=torch.int), metrics

        return output, loss_func

    return forward_step


def _run(
    stack, batches: Sequence[PackedMicroBatch], head: HeadSpec, loss_fn: LossFn | None, graphs: TrainGraphs | None
) -> list[dict]:
    # Only pipeline schedules use it (and build every micro-batch to get it); without them micro-batches are built
    # as the schedule reads them (`packing.MicroBatches`)
    seq_length = max(int(mb.tokens.size(1)) for mb in batches) if mg.pp_size() > 1 else 0
    return get_forward_backward_func()(
        forward_step_func=_forward_step_factory(head, loss_fn, graphs),
        data_iterator=iter(batches),
        model=stack.models,
        num_microbatches=len(batches),
        seq_length=seq_length,
        micro_batch_size=1,
        forward_only=loss_fn is None,
    )


@torch.no_grad()
def forward_only(stack, batches: Sequence[PackedMicroBatch], head: HeadSpec) -> dict[int, dict[str, torch.Tensor]]:
    """Per-sample results `{sample_id: {"log_probs": [R_i], ...}}` on every rank of the pipeline."""
    for model in stack.models:
        model.eval()
    try:
        store = _run(stack, batches, head, None, None) if batches else []
    finally:
        for model in stack.models:
            model.train()
    results: dict[int, dict[str, torch.Tensor]] = {}
    if mg.is_last_stage():
        for mb, outputs in zip(batches, store, strict=True):
            pieces = {k: mb.split_responses(v) for k, v in outputs.items()}
            for i, sid in enumerate(mb.sample_ids):
                results[sid] = {k: v[i] for k, v in pieces.items()}
    if mg.pp_size() > 1:
        results = _broadcast_from_last_stage(results)
    return results


def _broadcast_from_last_stage(results: dict[int, dict[str, torch.Tensor]]) -> dict[int, dict[str, torch.Tensor]]:
    payload = [{sid: {k: v.cpu() for k, v in d.items()} for sid, d in results.items()}]
    dist.broadcast_object_list(payload, src=mg.pp_last_rank(), group=mg.pp_group())
    device = mg.device()
    return {sid: {k: v.to(device) for k, v in d.items()} for sid, d in payload[0].items()}


def forward_backward(
    stack, batches: Sequence[PackedMicroBatch], head: HeadSpec, loss_fn: LossFn, graphs: TrainGraphs | None = None
) -> list[dict[str, Any]]:
    """Accumulate gradients of `loss_fn` over `batches`; returns each micro-batch's metrics (last stage only).

    With `graphs` the model's forward and backward replay captured CUDA graphs (`slime.megatron.cuda_graphs`)."""
    return _run(stack, batches, head, loss_fn, graphs)
