"""The loss-side plugin seams (custom loss, advantage, TIS and pg-loss reducer) and their resolution.

slime.types has no torch, so these Protocols live here. They keep slime's argument order so that a
user's function ports by changing only the container types: packed tensors replace lists of tensors.
`resolve_loss_plugins` imports and checks them once; nothing here calls a plugin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Protocol, TypeVar

from torch import Tensor

from slime.types import resolve

if TYPE_CHECKING:  # only for annotations; config.py does not import this module
    from slime.loss.config import LossConfig

T = TypeVar("T")


class CustomLossFn(Protocol):
    """`--custom-loss-function-path` with `loss_type='custom_loss'`."""

    def __call__(
        self,
        args: LossConfig,
        batch: Mapping[str, Tensor | None],
        logits: Tensor | None,
        sum_of_sample_mean: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, Mapping[str, Tensor]]:
        """Return this micro-batch's loss and metrics.

        Args:
            args: the loss config (slime's flag names).
            batch: the keyword tensors given to `compute_loss` (`log_probs`, `loss_mask`, `cu_seqlens` ...).
            logits: [T, V] when the trainer passed them, else None.
            sum_of_sample_mean: the global reducer [T] -> scalar; its results already include the global
                denominator, so the returned loss must not be divided again.

        Returns:
            (scalar loss, detached scalar metrics that SUM across micro-batches).
        """
        ...


class CustomAdvantageFn(Protocol):
    """`--custom-advantage-function-path`: replace the advantage estimator."""

    def __call__(self, args: LossConfig, rollout_data: MutableMapping[str, Tensor | None]) -> None:
        """Set `rollout_data["advantages"]` and `rollout_data["returns"]` ([T] each) in place.

        `rollout_data` holds `rewards`, `group_ids`, `cu_seqlens`, `loss_mask`, `old_log_probs`,
        `ref_log_probs`, `values` and `kl` ([T] reward KL estimate, zeros when `kl_coef == 0`).
        OPD and whitening are applied after it returns.
        """
        ...


class CustomTisFn(Protocol):
    """`--custom-tis-function-path`: replace the train/rollout mismatch correction (IcePop, MIS, RS ...)."""

    def __call__(
        self,
        args: LossConfig,
        pg_loss: Tensor,
        train_log_probs: Tensor,
        rollout_log_probs: Tensor,
        loss_mask: Tensor,
        **kwargs: Tensor,
    ) -> tuple[Tensor, Tensor, Mapping[str, Tensor]]:
        """Correct the per-token policy loss.

        Args:
            args: the loss config.
            pg_loss: [T] per-token policy loss before reduction.
            train_log_probs: [T] old log-probs from the trainer; rollout_log_probs: [T] from the engine.
            loss_mask: [T] 0/1 mask; kwargs: `cu_seqlens`, `log_probs`, `advantages`.

        Returns:
            ([T] corrected pg loss, [T] mask to reduce it with (rejection sampling may zero entries; the
            denominators stay the original ones), per-token metric tensors [T] reduced with the original mask).
        """
        ...


class PgLossReducerFactory(Protocol):
    """`--custom-pg-loss-reducer-function-path`: build the reducer used only for pg_loss."""

    def __call__(
        self,
        cu_seqlens: Tensor,
        loss_mask: Tensor,
        sample_denominators: Tensor,
        calculate_per_token_loss: bool,
    ) -> Callable[[Tensor], Tensor]:
        """Return a reducer [T] -> scalar micro-batch sum; `compute_loss` divides it by the global denominator."""
        ...


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LossPlugins:
    """The resolved plugin callables of a `LossConfig` (None where no path is set)."""

    custom_loss: CustomLossFn | None = None
    custom_advantage: CustomAdvantageFn | None = None
    custom_tis: CustomTisFn | None = None
    pg_loss_reducer: PgLossReducerFactory | None = None


def _load(path: str | None, protocol: type[T], flag: str) -> T | None:
    return None if path is None else resolve(path, protocol, flag=flag)


def resolve_loss_plugins(config: LossConfig) -> LossPlugins:
    """Import and signature-check every plugin path of `config`.

    Raises:
        slime.types.ContractError: a path does not import or does not match its Protocol.
    """
    return LossPlugins(
        custom_loss=_load(config.custom_loss_function_path, CustomLossFn, "--custom-loss-function-path"),
        custom_advantage=_load(
            config.custom_advantage_function_path, CustomAdvantageFn, "--custom-advantage-function-path"
        ),
        custom_tis=_load(config.custom_tis_function_path, CustomTisFn, "--custom-tis-function-path"),
        pg_loss_reducer=_load(
            config.custom_pg_loss_reducer_function_path, PgLossReducerFactory, "--custom-pg-loss-reducer-function-path"
        ),
    )


def plugins_for(config: LossConfig, plugins: LossPlugins | None) -> LossPlugins:
    """`plugins` if given, else the config's plugins resolved now (empty when it names none)."""
    if plugins is not None:
        return plugins
    has_paths = (
        config.custom_loss_function_path,
        config.custom_advantage_function_path,
        config.custom_tis_function_path,
        config.custom_pg_loss_reducer_function_path,
    )
    return resolve_loss_plugins(config) if any(has_paths) else LossPlugins()
