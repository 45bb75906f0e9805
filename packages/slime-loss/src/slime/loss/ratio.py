"""Importance ratios between the current and the old policy: token level and sequence level (GSPO).

Both return log-ratios [T] with masked tokens set to 0 (ratio 1, so garbage log-probs under the mask
can never produce inf or NaN) and clamped to +-20 (exp(20) ~ 5e8: beyond it the token is degenerate;
clamping keeps float32 finite and its gradient there is 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from slime.loss.packing import broadcast_to_tokens
from slime.loss.reduce import per_sample_sum

LOG_RATIO_LIMIT = 20.0
"""Log-ratios are clamped to [-20, 20] before exp."""


def token_log_ratio(log_probs: Tensor, old_log_probs: Tensor, loss_mask: Tensor) -> Tensor:
    """log rho_t = logp_t - logp_old_t on masked tokens, 0 elsewhere, clamped; [T] x3 -> [T]."""
    delta = torch.where(loss_mask.bool(), log_probs - old_log_probs, torch.zeros_like(log_probs))
    return delta.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


def sequence_log_ratio(log_probs: Tensor, old_log_probs: Tensor, loss_mask: Tensor, cu_seqlens: Tensor) -> Tensor:
    """GSPO: log s_i = sum_t m_t (logp - logp_old) / max(1, sum_t m_t), broadcast to the tokens; -> [T]."""
    delta = torch.where(loss_mask.bool(), log_probs - old_log_probs, torch.zeros_like(log_probs))
    counts = per_sample_sum(loss_mask.to(delta.dtype), cu_seqlens).clamp_min(1)
    per_sample = per_sample_sum(delta, cu_seqlens) / counts
    tokens = broadcast_to_tokens(per_sample, cu_seqlens, log_probs.shape[0])
    return tokens.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
