"""SFT loss per token: the negative log-likelihood -logp_t of the target tokens (masking in `reduce`)."""

from __future__ import annotations

import torch
from torch import Tensor


def sft_token_losses(log_probs: Tensor, loss_mask: Tensor) -> Tensor:
    """-logp_t on masked tokens, 0 elsewhere (so a -inf under the mask cannot leak NaN); [T], [T] -> [T]."""
    return torch.where(loss_mask.bool(), -log_probs, torch.zeros_like(log_probs))
