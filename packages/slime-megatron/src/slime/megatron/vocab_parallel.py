"""Log-probabilities and entropy from vocab-parallel logits, in row chunks, with a hand-written backward.

With tensor parallelism each rank holds logits for a slice of the vocabulary: `[T, V/tp]`. The log-softmax needs
the row max and the row sum of exponentials over the whole vocabulary: two all-reduces over the TP group (MAX,
then SUM of `[exp-sum, target logit, sum p*z]`). Rows are processed `chunk_size` at a time in fp32, so the
full-vocab fp32 matrix of a micro-batch is never materialised; backward recomputes each chunk's softmax from the
saved (bf16) logits instead of keeping it. Vocabulary padding columns (`>= vocab_size`, added by Megatron for
divisibility) are excluded, unlike Megatron's own cross-entropy.

It does not select response rows (the caller passes only the rows it needs) and does not reduce over tokens.
`group=None` means no tensor parallelism; results then equal slime.loss's single-device functions.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_reduce(t: torch.Tensor, op, group) -> torch.Tensor:
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=op, group=group)
    return t


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    # Low-precision logits are up-cast per chunk; float64 stays float64 (reference tests).
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _chunk_stats(logits, targets, vocab_start, vocab_size, temperature, group):
    """fp32 statistics of a chunk: (z = logits/T - max, valid mask, local target mask, max, log-sum-exp)."""
    z = logits.to(_compute_dtype(logits)) / temperature
    cols = torch.arange(vocab_start, vocab_start + z.size(-1), device=z.device)
    valid = cols < vocab_size
    z = z.masked_fill(~valid, float("-inf"))
    row_max = _all_reduce(z.max(dim=-1).values, dist.ReduceOp.MAX, group)
    z = z - row_max.unsqueeze(-1)
    local_t = targets - vocab_start
    in_shard = (local_t >= 0) & (local_t < z.size(-1))
    return z, valid, local_t.clamp(0, z.size(-1) - 1), in_shard, row_max


class _VocabParallelLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, vocab_start, vocab_size, temperature, group, chunk_size, with_entropy):
        n, dtype = logits.size(0), _compute_dtype(logits)
        logp, ent, lse_all, max_all = (torch.empty(n, dtype=dtype, device=logits.device) for _ in range(4))
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            z, valid, local_t, in_shard, row_max = _chunk_stats(
                logits[s:e], targets[s:e], vocab_start, vocab_size, temperature, group
            )
            exp_z = torch.exp(z)
            target_z = torch.where(in_shard, z.gather(-1, local_t.unsqueeze(-1)).squeeze(-1), 0.0)
            pz = torch.where(valid, exp_z * z, 0.0).sum(-1) if with_entropy else torch.zeros_like(target_z)
            stats = _all_reduce(torch.stack([exp_z.sum(-1), target_z, pz]), dist.ReduceOp.SUM, group)
            lse = torch.log(stats[0])
            logp[s:e] = stats[1] - lse
            ent[s:e] = lse - stats[2] / stats[0]
            lse_all[s:e], max_all[s:e] = lse, row_max
        ctx.save_for_backward(logits, targets, lse_all, max_all, ent)
        ctx.params = (vocab_start, vocab_size, temperature, chunk_size)
        return logp, ent

    @staticmethod
    def backward(ctx, grad_logp, grad_ent):
        logits, targets, lse_all, max_all, ent = ctx.saved_tensors
        vocab_start, vocab_size, temperature, chunk_size = ctx.params
        grad = torch.empty_like(logits)
        cols = torch.arange(vocab_start, vocab_start + logits.size(-1), device=logits.device)
        valid = cols < vocab_size
        for s in range(0, logits.size(0), chunk_size):
            e = min(logits.size(0), s + chunk_size)
            log_p = (logits[s:e].to(lse_all.dtype) / temperature - max_all[s:e, None] - lse_all[s:e, None]).masked_fill(
                ~valid, float("-inf")
            )
            p = torch.exp(log_p)
            # d logp_t / d z_j = 1[j = t] - p_j ;  d H / d z_j = -p_j (log p_j + H)
            g = -p * grad_logp[s:e, None]
            if grad_ent is not None:
                g = g - grad_ent[s:e, None] * torch.where(valid, p * (log_p + ent[s:e, None]), 0.0)
            local_t = targets[s:e] - vocab_start
            in_shard = (local_t >= 0) & (local_t < logits.size(-1))
            rows = torch.nonzero(in_shard).squeeze(-1)
            g[rows, local_t[rows]] += grad_logp[s:e][rows]
            grad[s:e] = (g / temperature).to(grad.dtype)
        return grad, None, None, None, None, None, None, None


def vocab_parallel_log_probs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_start: int = 0,
    vocab_size: int | None = None,
    temperature: float = 1.0,
    group: dist.ProcessGroup | None = None,
    chunk_size: int = 1024,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row `log softmax(logits / temperature)[target]` and, if asked, the row entropy.

    Results are float32 (float64 for float64 logits).

    Args:
        logits: `[N, V_local]`, this rank's vocabulary columns `[vocab_start, vocab_start + V_local)`.
        targets: `[N]` global token ids.
        vocab_start: first global column of this shard.
        vocab_size: true vocabulary size; columns at or past it (padding) are ignored. Default: no padding.
        temperature: divides the logits (the rollout temperature).
        group: the tensor-parallel group over which the vocabulary is split; None for a single shard.
        chunk_size: rows per fp32 chunk (<= 0: all rows at once).
        with_entropy: also return the entropy.

    Returns:
        `(log_probs [N], entropy [N] or None)`, differentiable with respect to `logits`.
    """
    if vocab_size is None:
        total = logits.size(-1) * (dist.get_world_size(group) if group is not None else 1)
        vocab_size = total
    if logits.size(0) == 0:
        empty = logits.new_zeros(0, dtype=_compute_dtype(logits)) + logits.sum() * 0
        return empty, (empty if with_entropy else None)
    chunk = chunk_size if chunk_size > 0 else logits.size(0)
    logp, ent = _VocabParallelLogProb.apply(
        logits, targets, vocab_start, vocab_size, temperature, group, chunk, with_entropy
    )
    return logp, (ent if with_entropy else None)
