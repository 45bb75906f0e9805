"""Per-token log-probs and entropy from full-vocabulary logits on one device, in row chunks.

Shapes: logits [T, V], target ids [T] (int64), results [T] in float32 (float64 for float64 logits).
The softmax is never kept: the forward keeps only a [T] log-sum-exp, and the backward recomputes the
softmax one chunk at a time, so the extra memory is one [chunk, V] block plus the logits' gradient.
It does not handle vocab-parallel (TP-sharded) logits or top-p replay; backends build those on top.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

DEFAULT_CHUNK_ELEMENTS = 1 << 24
"""Default row chunk: as many rows as fit 16M float32 logits (64 MiB) per block."""


def _compute_dtype(logits: Tensor) -> torch.dtype:
    # bf16/fp16 logits are upcast per chunk; float64 stays float64 (reference tests).
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _row_chunk(logits: Tensor, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1 (got {chunk_size}); use None for the automatic size.")
        return chunk_size
    return max(1, DEFAULT_CHUNK_ELEMENTS // max(1, logits.shape[-1]))


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """sum_v a[r, v] * b[r, v] per row, as a batched matmul (no [rows, V] temporary)."""
    return (a.unsqueeze(1) @ b.unsqueeze(2)).reshape(a.shape[0])


class _LogProbEntropy(torch.autograd.Function):
    """Fused log-prob (of `target_ids`) and entropy of softmax(logits / temperature), chunked over rows."""

    @staticmethod
    def forward(  # type: ignore[override]  # autograd.Function's forward is untyped by design
        ctx: FunctionCtx,
        logits: Tensor,
        target_ids: Tensor | None,
        temperature: float,
        chunk: int,
        with_entropy: bool,
    ) -> tuple[Tensor, Tensor]:
        num_tokens = logits.shape[0]
        dtype = _compute_dtype(logits)
        lse = torch.empty(num_tokens, dtype=dtype, device=logits.device)
        log_probs = torch.zeros(num_tokens, dtype=dtype, device=logits.device)
        entropy = torch.zeros(num_tokens, dtype=dtype, device=logits.device)
        for start in range(0, num_tokens, chunk):
            end = start + chunk
            z = logits[start:end].to(dtype) * (1.0 / temperature)  # always a fresh [chunk, V] buffer
            lse_c = torch.logsumexp(z, dim=-1)
            lse[start:end] = lse_c
            if target_ids is not None:
                log_probs[start:end] = z.gather(-1, target_ids[start:end].unsqueeze(-1)).squeeze(-1) - lse_c
            if with_entropy:
                # H = lse - sum_v p_v z_v
                entropy[start:end] = lse_c - _row_dot(torch.softmax(z, dim=-1), z)
        ctx.save_for_backward(logits, target_ids, lse, entropy)
        ctx.temperature, ctx.chunk = temperature, chunk  # type: ignore[attr-defined]  # ctx carries extras
        return log_probs, entropy

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]  # autograd.Function's backward is untyped by design
        ctx: FunctionCtx, grad_log_probs: Tensor | None, grad_entropy: Tensor | None
    ) -> tuple[Tensor | None, None, None, None, None]:
        logits, target_ids, lse, entropy = ctx.saved_tensors  # type: ignore[attr-defined]
        temperature, chunk = ctx.temperature, ctx.chunk  # type: ignore[attr-defined]
        has_lp = grad_log_probs is not None and target_ids is not None
        grad = torch.empty_like(logits)
        dtype = lse.dtype
        for start in range(0, logits.shape[0], chunk):
            end = start + chunk
            log_p = (logits[start:end].to(dtype) * (1.0 / temperature)).sub_(lse[start:end].unsqueeze(-1))
            p = log_p.exp()
            # dz = g_lp * (onehot - p) - g_h * p * (log p + H); with z = x / T, dx = dz / T.
            g_lp = grad_log_probs[start:end].to(dtype) / temperature if has_lp else None  # type: ignore[index]
            if grad_entropy is not None:
                g_h = (grad_entropy[start:end].to(dtype) / temperature).unsqueeze(-1)
                row = g_h * entropy[start:end].unsqueeze(-1)
                if g_lp is not None:
                    row = row + g_lp.unsqueeze(-1)
                g = log_p.mul_(g_h).add_(row).mul_(p).neg_()  # reuses log_p's buffer
            elif g_lp is not None:
                g = p.mul_(-g_lp.unsqueeze(-1))
            else:
                g = p.zero_()
            if g_lp is not None:
                g.scatter_add_(-1, target_ids[start:end].unsqueeze(-1), g_lp.unsqueeze(-1))
            grad[start:end] = g
        return grad, None, None, None, None


def log_probs_and_entropy_from_logits(
    logits: Tensor, target_ids: Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Log-prob of each target token and the entropy, from one pass over the logits.

    Args:
        logits: [T, V] logits of the positions that predict `target_ids` (any float dtype).
        target_ids: [T] int64 token ids.
        temperature: logits are divided by it (slime divides by `--rollout-temperature`).
        chunk_size: rows per block; None picks a block of about 16M logits.

    Returns:
        ([T] log-probs, [T] entropies), float32 (float64 for float64 logits), differentiable w.r.t. logits.
    """
    _check(logits, target_ids, temperature)
    return _LogProbEntropy.apply(logits, target_ids, float(temperature), _row_chunk(logits, chunk_size), True)


def log_probs_from_logits(
    logits: Tensor, target_ids: Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> Tensor:
    """log softmax(logits / temperature)[t, target_ids[t]] for every row; [T, V], [T] -> [T].

    Args:
        logits: [T, V] logits (any float dtype); target_ids: [T] int64.
        temperature: divisor of the logits (> 0).
        chunk_size: rows per block; None picks a block of about 16M logits.
    """
    _check(logits, target_ids, temperature)
    log_probs, _ = _LogProbEntropy.apply(logits, target_ids, float(temperature), _row_chunk(logits, chunk_size), False)
    return log_probs


def entropy_from_logits(logits: Tensor, temperature: float = 1.0, chunk_size: int | None = None) -> Tensor:
    """Entropy -sum_v p log p of softmax(logits / temperature) for every row; [T, V] -> [T]."""
    _check(logits, None, temperature)
    _, entropy = _LogProbEntropy.apply(logits, None, float(temperature), _row_chunk(logits, chunk_size), True)
    return entropy


def _check(logits: Tensor, target_ids: Tensor | None, temperature: float) -> None:
    if logits.dim() != 2:
        raise ValueError(f"`logits` must be [T, V] (got shape {tuple(logits.shape)}); flatten the batch first.")
    if target_ids is not None and target_ids.shape != logits.shape[:1]:
        raise ValueError(f"`target_ids` must be [T]={tuple(logits.shape[:1])} (got {tuple(target_ids.shape)}).")
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0 (got {temperature}); greedy decoding has no log-probs.")
