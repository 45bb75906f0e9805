"""Log-probabilities and entropy from vocab-parallel logits, with a hand-written backward.

With tensor parallelism each rank holds logits for a slice of the vocabulary: `[T, V/tp]`. The log-softmax needs
the row max and the row sum of exponentials over the whole vocabulary: two all-reduces over the TP group (MAX,
then SUM of `[exp-sum, target logit, sum p*z]`). Backward recomputes the softmax from the saved (bf16) logits
instead of keeping it. Vocabulary padding columns (`>= vocab_size`, added by Megatron for divisibility) are
excluded, unlike Megatron's own cross-entropy. The full-vocab fp32 matrix of a micro-batch is never materialised:

- on accelerators with bf16/fp16 logits the row functions are `torch.compile`'d: inductor reads the logits and
  writes only per-row results (forward) or the bf16 gradient (backward), so all rows go at once. Eager, the same
  work was ~15 fp32 passes over `[rows, V]` a micro-batch, 0.25 s of a 1.35 s H100 step at the 0.6B shape;
- otherwise (CPU, fp32/fp64: tests, the CPU demo) the same functions run eagerly, `chunk_size` rows at a time.

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


def _scaled(logits: torch.Tensor, inv_t: float) -> torch.Tensor:
    return logits.to(_compute_dtype(logits)) * inv_t


def _rows_max(logits: torch.Tensor, inv_t: float) -> torch.Tensor:
    return _scaled(logits, inv_t).amax(-1)


def _rows_stats(logits, row_max, inv_t: float, local_t, in_shard, with_entropy: bool) -> torch.Tensor:
    """`[3, rows]`: this shard's sum of exp(z), the target's z (0 off the shard) and, with entropy, sum of exp(z) z;
    z = logits / T - row max."""
    z = _scaled(logits, inv_t) - row_max.unsqueeze(-1)
    e = z.exp()
    target = torch.where(in_shard, z.gather(-1, local_t.unsqueeze(-1)).squeeze(-1), 0.0)
    pz = (e * z).sum(-1) if with_entropy else torch.zeros_like(target)
    return torch.stack([e.sum(-1), target, pz])


def _rows_grad(logits, shift, ent, g_lp, g_h, local_t, in_shard, inv_t: float) -> torch.Tensor:
    """d(sum g_lp logp + g_h H) / d logits, in the logits' dtype; log p = logits / T - shift."""
    log_p = _scaled(logits, inv_t) - shift.unsqueeze(-1)
    # d logp_t / d z_j = 1[j = t] - p_j ;  d H / d z_j = -p_j (log p_j + H);  z = x / T
    g = -log_p.exp() * (g_h.unsqueeze(-1) * (log_p + ent.unsqueeze(-1)) + g_lp.unsqueeze(-1))
    columns = torch.arange(logits.size(-1), device=logits.device)
    hit = (columns == local_t.unsqueeze(-1)) & in_shard.unsqueeze(-1)
    return ((g + torch.where(hit, g_lp.unsqueeze(-1), 0.0)) * inv_t).to(logits.dtype)


class _Ops:
    """The three row functions, eager or `torch.compile`'d (then inductor fuses each into one or two kernels that
    read the bf16 logits and never write a `[rows, V]` fp32 tensor, so all rows go at once, in no chunks)."""

    def __init__(self, compiled: bool) -> None:
        wrap = _compiled if compiled else (lambda fn: fn)
        self.rows_max, self.rows_stats, self.rows_grad = wrap(_rows_max), wrap(_rows_stats), wrap(_rows_grad)


def _compiled(fn):  # noqa: ANN001, ANN202
    """`fn` compiled for any row count but this vocabulary width. With a symbolic width every element of a `[rows, V]`
    kernel divides its flat index by it (a 64-bit integer division); the gradient kernel then ran at ~3x its memory
    traffic on an H100 (1.23 ms a 4k micro-batch), and it left the profile's top 25 once the width was static."""
    compiled = torch.compile(fn, dynamic=True)

    def call(logits: torch.Tensor, *args):  # noqa: ANN002, ANN202
        torch._dynamo.mark_static(logits, 1)
        return compiled(logits, *args)

    return call


_EAGER, _COMPILED = _Ops(compiled=False), _Ops(compiled=True)


def _fused(logits: torch.Tensor) -> bool:
    # compiled on accelerators only: CPU runs (tests, the CPU demo) would compile C++ for every new shape
    return logits.is_cuda and logits.dtype in (torch.bfloat16, torch.float16) and logits.size(1) > 0


class _VocabParallelLogProb(torch.autograd.Function):
    """Inputs are this shard's *valid* columns only (padding sliced off by the caller)."""

    @staticmethod
    def forward(ctx, logits, targets, vocab_start, temperature, group, chunk_size, with_entropy):
        n, width, dtype = logits.size(0), logits.size(1), _compute_dtype(logits)
        fused, inv_t = _fused(logits), 1.0 / temperature
        ops, chunk = (_COMPILED, max(1, n)) if fused else (_EAGER, chunk_size)
        logp, ent, shift = (torch.empty(n, dtype=dtype, device=logits.device) for _ in range(3))
        local_t = targets - vocab_start
        in_shard = (local_t >= 0) & (local_t < width)
        local_t = local_t.clamp(0, max(0, width - 1))
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            rows = logits[s:e].detach()  # this function is the autograd node: the row functions need no graph
            local_max = ops.rows_max(rows, inv_t) if width else rows.new_full((e - s,), float("-inf"), dtype=dtype)
            row_max = _all_reduce(local_max, dist.ReduceOp.MAX, group)
            if width:
                stats = ops.rows_stats(rows, row_max, inv_t, local_t[s:e], in_shard[s:e], with_entropy)
            else:
                stats = rows.new_zeros((3, e - s), dtype=dtype)
            stats = _all_reduce(stats, dist.ReduceOp.SUM, group)
            lse = torch.log(stats[0])
            logp[s:e] = stats[1] - lse
            ent[s:e] = lse - stats[2] / stats[0]
            shift[s:e] = row_max + lse  # log p = z_raw / T - shift
        ctx.save_for_backward(logits, local_t, in_shard, shift, ent)
        ctx.params = (inv_t, chunk, ops)
        return logp, ent

    @staticmethod
    def backward(ctx, grad_logp, grad_ent):
        logits, local_t, in_shard, shift, ent = ctx.saved_tensors
        inv_t, chunk, ops = ctx.params
        zeros = torch.zeros_like(shift)
        g_lp = zeros if grad_logp is None else grad_logp.to(shift.dtype)
        g_h = zeros if grad_ent is None else grad_ent.to(shift.dtype)
        if logits.size(1) == 0:
            return torch.zeros_like(logits), None, None, None, None, None, None
        if chunk >= logits.size(0):  # one pass (the compiled path): its result is the gradient, no copy into place
            return (
                ops.rows_grad(logits.detach(), shift, ent, g_lp, g_h, local_t, in_shard, inv_t),
                *([None] * 6),
            )
        grad = torch.empty_like(logits)
        for s in range(0, logits.size(0), chunk):
            e = min(logits.size(0), s + chunk)
            rows, bounds = logits[s:e].detach(), slice(s, e)
            grad[s:e] = ops.rows_grad(
                rows, shift[bounds], ent[bounds], g_lp[bounds], g_h[bounds], local_t[bounds], in_shard[bounds], inv_t
            )
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
