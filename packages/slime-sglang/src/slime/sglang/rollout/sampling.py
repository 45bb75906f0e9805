"""Sampling parameters of a rollout from slime's flags (`--rollout-*`, and the `--eval-*` overrides).

Training uses `--rollout-temperature/-top-p/-top-k/-max-response-len/-stop/-stop-token-ids/
-skip-special-tokens`; evaluation uses `--eval-temperature/-top-p/-top-k/-max-response-len` where set and
falls back to the rollout values. `no_stop_trim` is always on so the returned tokens and text keep the stop
string and stay aligned. With `--sglang-enable-deterministic-inference` every sample also gets its own
`sampling_seed`, derived from `--rollout-seed` and the sample's index (slime seeds by position in the group, so a
prompt served again in a later epoch would get the very same answers; mixing in the index avoids that), so a
retried or resumed sample is generated exactly as before. Pure functions over `args`; nothing is sent anywhere.
"""

from __future__ import annotations

import hashlib
from typing import Any

from slime.types import ConfigError, SamplingParams


def _first_set(args: Any, *names: str) -> Any:
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            return value
    return None


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int):
        return (value,)
    return tuple(value)


def sampling_params_from_args(args: Any, *, evaluation: bool = False) -> SamplingParams:
    """The `SamplingParams` one rollout (or evaluation, with its overrides) starts every sample with.

    Raises:
        ConfigError: `--rollout-max-response-len` (and, for eval, `--eval-max-response-len`) is unset, or a
            value is out of range (the message names the field).
    """
    prefix = ("eval_",) if evaluation else ()
    max_len = _first_set(args, *(p + "max_response_len" for p in prefix), "rollout_max_response_len")
    if max_len is None:
        raise ConfigError(
            "--rollout-max-response-len is not set; the rollout needs it as max_new_tokens "
            "(evaluation may use --eval-max-response-len instead)."
        )
    temperature = _first_set(args, *(p + "temperature" for p in prefix), "rollout_temperature")
    top_p = _first_set(args, *(p + "top_p" for p in prefix), "rollout_top_p")
    top_k = _first_set(args, *(p + "top_k" for p in prefix), "rollout_top_k")
    return SamplingParams(
        max_new_tokens=int(max_len),
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        top_k=-1 if top_k is None else int(top_k),
        stop=tuple(str(s) for s in _as_tuple(getattr(args, "rollout_stop", None))),
        stop_token_ids=tuple(int(t) for t in _as_tuple(getattr(args, "rollout_stop_token_ids", None))),
        skip_special_tokens=bool(getattr(args, "rollout_skip_special_tokens", False)),
        no_stop_trim=True,
    )


def sample_sampling_seed(args: Any, index: int | None) -> int | None:
    """The `sampling_seed` of sample `index` under `--sglang-enable-deterministic-inference`, else None.

    A stable hash of (`--rollout-seed`, index) in [0, 2**31 - 1): the same on every run and machine, and small
    enough for any engine's integer seed.
    """
    if not getattr(args, "sglang_enable_deterministic_inference", False) or index is None:
        return None
    digest = hashlib.blake2b(f"{getattr(args, 'rollout_seed', 42)}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)
