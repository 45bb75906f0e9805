"""Sample hooks (`--rollout-sample-hook-path`, repeatable): user functions applied to each generated sample.

A hook is `hook(args, sample, *, rollout_id, evaluation)`, sync or async; only the keyword arguments it
accepts are passed. It may return a replacement `Sample`, or None to keep the (possibly mutated) sample;
anything else is a `ContractError`. Hooks run in flag order on every generated sample before it is scored
(for a custom generate that returned several samples, on each of them). Loading checks the signature once.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from slime.types import ContractError, Sample, load_object

FLAG = "--rollout-sample-hook-path"
_OPTIONAL_KWARGS = ("rollout_id", "evaluation")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SampleHook:
    """One loaded hook and the keyword arguments it accepts."""

    path: str
    fn: Callable[..., Any]
    kwargs: tuple[str, ...]

    async def __call__(self, args: Any, sample: Sample, *, rollout_id: int, evaluation: bool) -> Sample:
        values = {"rollout_id": rollout_id, "evaluation": evaluation}
        result = self.fn(args, sample, **{k: values[k] for k in self.kwargs})
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return sample
        if not isinstance(result, Sample):
            raise ContractError(
                f"{FLAG} {self.path!r} returned {type(result).__name__}; a sample hook returns a Sample or None."
            )
        return result


def load_sample_hook(path: str) -> SampleHook:
    """Import a hook and check that it takes `(args, sample)` positionally.

    Raises:
        ContractError: the path does not import, or the function cannot be called as a hook.
    """
    fn = load_object(path, flag=FLAG)
    if not callable(fn):
        raise ContractError(f"{FLAG} {path!r} is not callable.")
    try:
        sig = inspect.signature(fn)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        kwargs = tuple(k for k in _OPTIONAL_KWARGS if accepts_any or k in sig.parameters)
        sig.bind(None, None, **dict.fromkeys(kwargs))
    except (TypeError, ValueError) as exc:
        raise ContractError(
            f"{FLAG} {path!r} must accept (args, sample, *, rollout_id, evaluation); its signature is "
            f"{_describe(fn)} ({exc})."
        ) from exc
    return SampleHook(path=path, fn=fn, kwargs=kwargs)


def _describe(fn: Any) -> str:
    try:
        return f"{getattr(fn, '__name__', fn)}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def load_sample_hooks(paths: str | Sequence[str] | None) -> tuple[SampleHook, ...]:
    """Load every hook of the (repeatable) flag, in order."""
    if not paths:
        return ()
    if isinstance(paths, str):
        paths = [paths]
    return tuple(load_sample_hook(p) for p in paths)


async def apply_sample_hooks(
    hooks: Sequence[SampleHook], args: Any, sample: Sample, *, rollout_id: int, evaluation: bool
) -> Sample:
    """Run every hook on `sample` in order; returns the final sample."""
    for hook in hooks:
        sample = await hook(args, sample, rollout_id=rollout_id, evaluation=evaluation)
    return sample
