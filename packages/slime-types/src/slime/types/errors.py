"""Error classes shared by every layer.

Each class derives from `SlimeError` and from the builtin a caller would naturally catch, so
`except ValueError` still works for configuration mistakes. This module defines classes only.
"""

from __future__ import annotations


class SlimeError(Exception):
    """Root of every error slime raises on purpose."""


class ConfigError(SlimeError, ValueError):
    """A flag, config field or combination of them is invalid. The message names the field and the fix."""


class ContractError(SlimeError, TypeError):
    """A plugin or record does not honour its Protocol (wrong signature, wrong return type, broken invariant)."""


class DataError(SlimeError, ValueError):
    """Input data (a prompt file row, a checkpoint tensor) is malformed. The message names file, row and key."""


class EngineError(SlimeError, RuntimeError):
    """A generation engine, router or reward server failed or answered something we cannot use."""


class WeightSyncError(SlimeError, RuntimeError):
    """A weight publish or apply failed; the receiver keeps the weights it had before."""
