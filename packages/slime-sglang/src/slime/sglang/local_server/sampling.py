"""Token sampling for the local server, with SGLang's semantics: pure functions over a batch of logits.

Semantics (checked against sglang 0.5.17 `srt/layers/sampler.py` and `srt/sampling/sampling_params.py`):

- temperature < 1e-6 means greedy: the arg-max token, and its log-prob under `log_softmax(logits)`.
- Otherwise probabilities are `softmax(logits / temperature)`; top-k then top-p (computed on the *unfiltered*
  sorted probabilities, as SGLang's torch path does) zero out tokens, and the token is drawn from what is left.
- The returned log-prob is `log_softmax(logits / temperature)` of the sampled token: the temperature-scaled
  distribution *before* top-k / top-p filtering. That is SGLang's `return_logprob` (without
  SGLANG_RETURN_ORIGINAL_LOGPROB) and what a trainer that divides logits by the temperature recomputes.

This module does not run the model and keeps no state besides the generators it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

SAMPLING_EPS = 1e-6
"""SGLang's threshold under which a temperature means greedy decoding."""


@dataclasses.dataclass(frozen=True, slots=True)
class RowSampling:
    """Sampling settings of one batch row (SGLang's names; `top_k=-1` disables top-k)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    generator: torch.Generator | None = None

    @property
    def is_greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS


def sample(
    logits: torch.Tensor, rows: Sequence[RowSampling], default_generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of `logits` ([B, V], any float dtype; computed in fp32).

    Returns:
        `(token_ids [B] int64, logprobs [B] fp32)`, the log-probs as described in the module docstring.
    """
    logits = logits.float()
    batch = logits.shape[0]
    temperatures = torch.tensor([1.0 if r.is_greedy else r.temperature for r in rows], dtype=torch.float32)
    logprobs = torch.log_softmax(logits / temperatures[:, None], dim=-1)
    tokens = torch.empty(batch, dtype=torch.long)
    greedy = [i for i, r in enumerate(rows) if r.is_greedy]
    if greedy:
        tokens[greedy] = logits[greedy].argmax(dim=-1)
    sampled = [i for i, r in enumerate(rows) if not r.is_greedy]
    if sampled:
        probs = filter_top_k_top_p(
            logprobs[sampled].exp(),
            top_k=torch.tensor([rows[i].top_k for i in sampled]),
            top_p=torch.tensor([rows[i].top_p for i in sampled], dtype=torch.float32),
        )
        tokens[sampled] = _multinomial(probs, [rows[i].generator or default_generator for i in sampled])
    return tokens, logprobs.gather(-1, tokens[:, None])[:, 0]


def filter_top_k_top_p(probs: torch.Tensor, *, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the probabilities outside each row's top-k and top-p sets (not renormalised; multinomial is not
    sensitive to scale). `top_k` <= 0 disables top-k for that row."""
    vocab = probs.shape[-1]
    top_k = torch.where(top_k <= 0, torch.full_like(top_k, vocab), top_k)
    if bool((top_k >= vocab).all()) and bool((top_p >= 1.0).all()):
        return probs
    sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    ranks = torch.arange(vocab).view(1, -1)
    sorted_probs = sorted_probs.masked_fill(ranks >= top_k.view(-1, 1), 0.0)
    # SGLang's rule: drop a token when the mass strictly before it already exceeds top_p.
    sorted_probs = sorted_probs.masked_fill((cumulative - sorted_probs) > top_p.view(-1, 1), 0.0)
    return torch.zeros_like(probs).scatter_(-1, sorted_idx, sorted_probs)


def _multinomial(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    if all(g is generators[0] for g in generators):
        return torch.multinomial(probs, 1, generator=generators[0])[:, 0]
    # Seeded requests draw from their own generator so their samples do not depend on batch neighbours.
    return torch.cat([torch.multinomial(p[None], 1, generator=g)[:, 0] for p, g in zip(probs, generators, strict=True)])
