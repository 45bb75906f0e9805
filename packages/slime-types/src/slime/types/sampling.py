"""`SamplingParams`: what a generate call asks the engine for, in SGLang's names.

Built once per rollout from the `--rollout-*` flags (or their eval overrides) and copied per sample, since
the default generate lowers `max_new_tokens` for partial samples. It does not know any engine.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from slime.types.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SamplingParams:
    """Sampling settings sent as SGLang's `sampling_params`."""

    max_new_tokens: int
    """Upper bound on generated tokens for this call (slime: `--rollout-max-response-len`)."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding. Trainers divide logits by the same value."""
    top_p: float = 1.0
    """Nucleus mass in (0, 1]; 1 disables nucleus filtering."""
    top_k: int = -1
    """Keep the k most likely tokens; -1 disables top-k filtering."""
    stop: tuple[str, ...] = ()
    """Stop strings; the stop string is kept in the output only with `no_stop_trim`."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end generation in addition to the tokenizer's eos."""
    skip_special_tokens: bool = False
    """Whether the returned text drops special tokens (ids are always returned in full)."""
    no_stop_trim: bool = True
    """Keep the matched stop string / token in the output so tokens and text stay aligned."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ConfigError(
                f"`max_new_tokens` must be >= 0 (got {self.max_new_tokens}); set --rollout-max-response-len."
            )
        if self.temperature < 0:
            raise ConfigError(f"`temperature` must be >= 0 (got {self.temperature}); 0 is greedy decoding.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"`top_p` must be in (0, 1] (got {self.top_p}); use 1.0 to disable nucleus sampling.")
        if self.top_k == 0 or self.top_k < -1:
            raise ConfigError(f"`top_k` must be -1 (disabled) or >= 1 (got {self.top_k}).")

    def with_max_new_tokens(self, max_new_tokens: int) -> SamplingParams:
        """A copy with another token budget (partial rollouts continue with what is left)."""
        return dataclasses.replace(self, max_new_tokens=max(0, max_new_tokens))

    def to_sglang(self) -> dict[str, Any]:
        """The JSON object SGLang's `/generate` expects under `sampling_params`."""
        out: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "skip_special_tokens": self.skip_special_tokens,
            "no_stop_trim": self.no_stop_trim,
        }
        if self.stop:
            out["stop"] = list(self.stop)
        if self.stop_token_ids:
            out["stop_token_ids"] = list(self.stop_token_ids)
        return out
