"""`GenerateOutput`: what one generate call returned, engine-independent.

Parsed from SGLang's `/generate` JSON by slime.sglang's client (or produced by any other engine). It is a
plain record; applying it to a `Sample` is `Sample.append_response`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class GenerateOutput:
    """Output tokens of one call with their log-probs (one per token when requested) and why it ended."""

    output_ids: tuple[int, ...]
    output_log_probs: tuple[float, ...] | None
    finish_reason: FinishReason
    text: str = ""
    weight_version: str | None = None
    prompt_tokens: int = 0
