"""`LossConfig`: the advantage and loss flags of slime, with slime's names and defaults, validated.

It only holds and checks values (no derived state is stored, nothing is imported or resolved here);
`compute_advantages`, `compute_loss` and `compute_value_loss` read it, the pure functions never do.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

from slime.types import ConfigError

AdvantageEstimator = Literal[
    "grpo",
    "dr_grpo",
    "gspo",
    "cispo",
    "rloo",
    "reinforce_plus_plus",
    "reinforce_plus_plus_baseline",
    "ppo",
]
KlType = Literal["k1", "k2", "k3", "low_var_kl"]
LossType = Literal["policy_loss", "sft_loss", "custom_loss"]
TisType = Literal["truncate", "icepop", "reject"]

GROUP_NORMALIZED_ESTIMATORS = frozenset({"grpo", "gspo", "cispo"})
"""Estimators whose group baseline is divided by the group std unless `disable_grpo_std_normalization`."""
KL_REWARD_ESTIMATORS = frozenset({"reinforce_plus_plus", "reinforce_plus_plus_baseline", "ppo"})
"""Estimators that fold `kl_coef * KL` into token rewards; the others ignore `kl_coef` (as slime does)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LossConfig:
    """Advantage and loss settings; field names are slime's flag names (`--eps-clip` -> `eps_clip`)."""

    advantage_estimator: AdvantageEstimator = "grpo"
    """How rewards become per-token advantages; `ppo` needs critic values, `gspo` uses a sequence ratio."""
    disable_grpo_std_normalization: bool = False
    """grpo/gspo/cispo: subtract the group mean but do not divide by the group std (Dr.GRPO)."""
    disable_rewards_normalization: bool = False
    """Use raw rewards: no group baseline at all, for every group-relative estimator."""
    normalize_advantages: bool = False
    """Whiten advantages over the masked tokens of the whole batch; required by the REINFORCE++ variants."""
    gamma: float = 1.0
    """Discount for GAE and REINFORCE++ returns, in [0, 1]."""
    lambd: float = 1.0
    """GAE lambda, in [0, 1]."""
    kl_coef: float = 0.0
    """KL penalty folded into token rewards (ppo, reinforce_plus_plus[_baseline]); excludes `kl_loss_coef`."""
    use_kl_loss: bool = False
    """Add `kl_loss_coef * KL(pi || pi_ref)` to the loss; needs reference log-probs."""
    kl_loss_coef: float = 0.0
    """Weight of the KL loss term (only used with `use_kl_loss`)."""
    kl_loss_type: KlType = "k1"
    """KL estimator for the KL loss and the reward KL: k1, k2, k3 or low_var_kl."""
    use_unbiased_kl: bool = False
    """Multiply the KL-loss estimate by exp(logp - logp_old) (importance-corrected KL)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight: the loss gets `- entropy_coef * entropy`; needs `entropy` when non-zero."""
    eps_clip: float = 0.2
    """PPO lower clip epsilon: the ratio is kept >= 1 - eps_clip."""
    eps_clip_high: float | None = None
    """PPO upper clip epsilon: the ratio is kept <= 1 + eps_clip_high; None means `eps_clip`."""
    eps_clip_c: float | None = None
    """Dual-clip constant c > 1: for A < 0 the token loss is capped at -c * A; None disables dual clip."""
    value_clip: float = 0.2
    """Critic value clipping range around the old values."""
    use_tis: bool = False
    """Weight the policy loss by truncated importance weights exp(old - rollout); needs rollout log-probs."""
    tis_clip: float = 2.0
    """Upper bound of the TIS weight."""
    tis_clip_low: float = 0.0
    """Lower bound of the TIS weight."""
    tis_type: TisType = "truncate"
    """Built-in TIS variant: truncate (clamp), icepop (0 outside the bounds) or reject (mask outside)."""
    use_rollout_logprobs: bool = False
    """The old log-probs are the engine's rollout log-probs; excludes `use_tis`."""
    use_opsm: bool = False
    """Off-policy sequence masking: drop tokens with A < 0 of sequences whose mean(old - new) > opsm_delta."""
    opsm_delta: float = 1e-4
    """OPSM threshold on the per-sequence mean log-ratio."""
    use_opd: bool = False
    """On-policy distillation: A <- A - opd_kl_coef * (logp_old - logp_teacher); needs teacher log-probs."""
    opd_kl_coef: float = 1.0
    """OPD coefficient."""
    calculate_per_token_loss: bool = False
    """Reduce as a token sum over all global tokens instead of the mean over samples of token means."""
    loss_type: LossType = "policy_loss"
    """policy_loss, sft_loss (masked NLL) or custom_loss (needs `custom_loss_function_path`)."""
    custom_loss_function_path: str | None = None
    """`CustomLossFn` plugin used when `loss_type == "custom_loss"`."""
    custom_advantage_function_path: str | None = None
    """`CustomAdvantageFn` plugin replacing the estimator; OPD and whitening still apply afterwards."""
    custom_tis_function_path: str | None = None
    """`CustomTisFn` plugin replacing the built-in TIS (IcePop, MIS, rejection sampling ...)."""
    custom_pg_loss_reducer_function_path: str | None = None
    """`PgLossReducerFactory` plugin replacing only the pg_loss reducer (e.g. Dr.GRPO constant divisor)."""

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_ranges(self)
        _check_combinations(self)

    @property
    def clip_high(self) -> float:
        """The effective upper clip epsilon (`eps_clip_high`, or `eps_clip` when unset)."""
        return self.eps_clip if self.eps_clip_high is None else self.eps_clip_high

    @property
    def use_critic(self) -> bool:
        """Whether the estimator needs a critic (values, value loss)."""
        return self.advantage_estimator == "ppo"


def _fail(field: str, value: object, rule: str, fix: str) -> ConfigError:
    return ConfigError(f"`{field}` {rule} (got {value!r}). {fix}")


def _check_choices(c: LossConfig) -> None:
    for field, literal in (
        ("advantage_estimator", AdvantageEstimator),
        ("kl_loss_type", KlType),
        ("loss_type", LossType),
        ("tis_type", TisType),
    ):
        choices = get_args(literal)
        value = getattr(c, field)
        if value not in choices:
            raise _fail(field, value, f"must be one of {list(choices)}", f"Set `{field}` to one of them.")


def _check_ranges(c: LossConfig) -> None:
    if c.eps_clip < 0:
        raise _fail("eps_clip", c.eps_clip, "must be >= 0", "Use 0.2 (slime's default).")
    if c.eps_clip_high is not None and c.eps_clip_high < 0:
        raise _fail("eps_clip_high", c.eps_clip_high, "must be >= 0 or None", "Use None to reuse `eps_clip`.")
    if c.eps_clip_c is not None and not c.eps_clip_c > 1:
        raise _fail("eps_clip_c", c.eps_clip_c, "must be > 1 (dual-clip constant)", "Use e.g. 3.0, or None.")
    for field in ("gamma", "lambd"):
        value = getattr(c, field)
        if not 0 <= value <= 1:
            raise _fail(field, value, "must be in [0, 1]", f"Set `{field}=1.0` (slime's default).")
    if not c.value_clip > 0:
        raise _fail("value_clip", c.value_clip, "must be > 0", "Use 0.2 (slime's default).")
    if c.tis_clip_low < 0:
        raise _fail("tis_clip_low", c.tis_clip_low, "must be >= 0", "Use 0.0 (slime's default).")
    if c.tis_clip < c.tis_clip_low:
        raise _fail("tis_clip", c.tis_clip, f"must be >= tis_clip_low={c.tis_clip_low}", "Raise `tis_clip`.")


def _check_combinations(c: LossConfig) -> None:
    if c.kl_coef != 0 and c.kl_loss_coef != 0:
        raise _fail(
            "kl_coef", c.kl_coef, f"and kl_loss_coef={c.kl_loss_coef} cannot both be non-zero", "Set one to 0."
        )
    if c.advantage_estimator in ("reinforce_plus_plus", "reinforce_plus_plus_baseline") and not c.normalize_advantages:
        raise _fail(
            "normalize_advantages",
            c.normalize_advantages,
            f"must be True for advantage_estimator={c.advantage_estimator!r}",
            "Set `normalize_advantages=True` (--normalize-advantages), as slime requires.",
        )
    if c.use_tis and c.use_rollout_logprobs:
        raise _fail(
            "use_tis", c.use_tis, "excludes use_rollout_logprobs=True (the weights would all be 1)", "Drop one."
        )
    if c.loss_type == "custom_loss" and not c.custom_loss_function_path:
        raise _fail(
            "custom_loss_function_path",
            c.custom_loss_function_path,
            "is required with loss_type='custom_loss'",
            "Set it to `my_pkg.my_mod:my_loss`.",
        )
