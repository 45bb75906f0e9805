"""Compare the tensors a checkpoint holds with those its config implies, and fail naming each tensor and shapes.

Every converter calls `check_shapes` before it writes anything, so a config that does not belong to the
checkpoint (another size, vocabulary, head count, tied vs untied embeddings) stops the conversion with a
`ConfigError` that names the tensors, both shapes and the fix. It reads nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slime.types import ConfigError

_SHOWN = 8
"""Problems listed in one message; the rest are counted."""


def shape_problems(found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]) -> list[str]:
    """One line per tensor that is missing, unexpected, or of another shape (in `expected`'s order)."""
    problems = []
    for name, shape in expected.items():
        if name not in found:
            problems.append(f"tensor {name!r} is missing from the checkpoint (config implies shape {tuple(shape)})")
        elif tuple(found[name]) != tuple(shape):
            problems.append(
                f"tensor {name!r}: checkpoint has shape {tuple(found[name])}, config implies {tuple(shape)}"
            )
    problems += [
        f"tensor {name!r} (shape {tuple(found[name])}) is in the checkpoint but not implied by the config"
        for name in found
        if name not in expected
    ]
    return problems


def check_shapes(
    found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], *, checkpoint: str, config: str
) -> None:
    """Raise `ConfigError` unless `found` and `expected` hold the same names with the same shapes."""
    problems = shape_problems(found, expected)
    if not problems:
        return
    more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    raise ConfigError(
        f"the checkpoint {checkpoint} does not match the config {config}:\n  "
        + "\n  ".join(problems[:_SHOWN])
        + more
        + "\nPoint the config flag at the model the checkpoint was made from (or fix its config.json)."
    )
