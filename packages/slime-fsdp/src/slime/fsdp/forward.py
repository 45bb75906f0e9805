"""One packed forward pass -> per-token log-probs (and entropy) of the response tokens.

Logits are computed only at the positions that predict response tokens, divided by the rollout
temperature, and reduced by slime.loss's fused, row-chunked log-prob/entropy (float32). It does not
choose weights (actor vs reference) or compute losses.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from slime.fsdp.packed_batch import PackedBatch
from slime.loss import log_probs_and_entropy_from_logits, log_probs_from_logits


@dataclasses.dataclass(frozen=True, slots=True)
class ForwardOutput:
    """[T] log-probs and optional [T] entropy of one micro-batch; `anchor` ties dummy batches into autograd."""

    log_probs: Tensor
    entropy: Tensor | None
    anchor: Tensor
    """`0 * sum(logits)` for a dummy micro-batch, so every parameter joins backward; a constant 0 otherwise."""


def forward_packed(
    model: nn.Module, batch: PackedBatch, *, temperature: float, chunk_size: int | None, with_entropy: bool
) -> ForwardOutput:
    """Run `model` on `batch` and return the response tokens' log-probs under `temperature`."""
    logits = model(**batch.model_kwargs()).logits[0]
    if batch.is_empty:
        empty = logits.new_zeros(0, dtype=torch.float32)
        return ForwardOutput(empty, empty if with_entropy else None, logits.sum() * 0.0)
    anchor = logits.new_zeros((), dtype=torch.float32)  # real batches reach every parameter through the loss
    if with_entropy:
        log_probs, entropy = log_probs_and_entropy_from_logits(logits, batch.target_ids, temperature, chunk_size)
        return ForwardOutput(log_probs, entropy, anchor)
    return ForwardOutput(log_probs_from_logits(logits, batch.target_ids, temperature, chunk_size), None, anchor)
