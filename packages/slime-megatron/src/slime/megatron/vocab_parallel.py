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


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(-1)).view(-1)


class _VocabParallelLogProb(torch.autograd.Function):
    """Inputs are this shard's *valid* columns only (padding sliced off by the caller)."""

    @staticmethod
    def forward(ctx, logits, targets, vocab_start, temperature, group, chunk_size, with_entropy):
        n, width, dtype = logits.size(0), logits.size(1), _compute_dtype(logits)
        logp, ent, shift = (torch.empty(n, dtype=dtype, device=logits.device) for _ in range(3))
        local_t = targets - vocab_start
        in_shard = (local_t >= 0) & (local_t < width)
        local_t = local_t.clamp(0, max(0, width - 1)).unsqueeze(-1)
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            z = logits[s:e].to(dtype) * (1.0 / temperature)  # a fresh [chunk, V_local] buffer
            local_max = z.max(dim=-1).values if width else z.new_full((e - s,), float("-inf"))
            row_max = _all_reduce(local_max, dist.ReduceOp.MAX, group)
            z.sub_(row_max.unsqueeze(-1))
            picked = z.gather(-1, local_t[s:e]).squeeze(-1) if width else z.new_zeros(e - s)
            target_z = torch.where(in_shard[s:e], picked, 0.0)
            exp_z = torch.exp(z)
            pz = _row_dot(exp_z, z) if with_entropy else torch.zeros_like(target_z)
            stats = _all_reduce(torch.stack([exp_z.sum(-1), target_z, pz]), dist.ReduceOp.SUM, group)
            lse = torch.log(stats[0])
            logp[s:e] = stats[1] - lse
            ent[s:e] = lse - stats[2] / stats[0]
            shift[s:e] = row_max + lse  # log p = z_raw / T - shift
        ctx.save_for_backward(logits, local_t.squeeze(-1), in_shard, shift, ent)
        ctx.params = (temperature, chunk_size)
        return logp, ent

    @staticmethod
    def backward(ctx, grad_logp, grad_ent):
        logits, local_t, in_shard, shift, ent = ctx.saved_tensors
        temperature, chunk_size = ctx.params
        grad = torch.empty_like(logits)
        dtype = shift.dtype
        for s in range(0, logits.size(0), chunk_size):
            e = min(logits.size(0), s + chunk_size)
            log_p = (logits[s:e].to(dtype) * (1.0 / temperature)).sub_(shift[s:e].unsqueeze(-1))
            p = log_p.exp()
            # d logp_t / d z_j = 1[j = t] - p_j ;  d H / d z_j = -p_j (log p_j + H);  z = x / T
            g_lp = grad_logp[s:e].to(dtype).unsqueeze(-1) if grad_logp is not None else None
            if grad_ent is not None:
                g_h = grad_ent[s:e].to(dtype).unsqueeze(-1)
                row = g_h * ent[s:e].unsqueeze(-1) + (g_lp if g_lp is not None else 0.0)
                g = log_p.mul_(g_h).add_(row).mul_(p).neg_()
            else:
                g = p.mul_(g_lp).neg_() if g_lp is not None else torch.zeros_like(p)
            if g_lp is not None and logits.size(1):
                hit = in_shard[s:e].to(dtype).unsqueeze(-1) * g_lp
                g.scatter_add_(-1, local_t[s:e].unsqueeze(-1), hit)
            grad[s:e] = g.mul_(1.0 / temperature)
        return grad, None, None, None, None, None, None


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
    width = logits.size(-1)
    valid = width if vocab_size is None else max(0, min(width, vocab_size - vocab_start))
    if logits.size(0) == 0:
        empty = logits.new_zeros(0, dtype=_compute_dtype(logits)) + logits.sum() * 0
        return empty, (empty if with_entropy else None)
    # Padding columns (>= vocab_size) are sliced off: they take no part and get a zero gradient.
    shard = logits if valid == width else logits[:, :valid]
    chunk = chunk_size if chunk_size > 0 else logits.size(0)
    logp, ent = _VocabParallelLogProb.apply(shard, targets, vocab_start, temperature, group, chunk, with_entropy)
    return logp, (ent if with_entropy else None)
