"""Where the actor and reference weights come from: `--load`, `--ckpt-step`, `--ref-load`, `--hf-checkpoint`.

The rules are the seeds' (docs "加载 megatron ckpt" and inventory section 1.2 rule 4):

1. `--load` is a Megatron root (has `latest_checkpointed_iteration.txt`): resume from it (`--ckpt-step` or the
   tracker), with optimizer and RNG unless `--no-load-optim` / `--no-load-rng` / `--finetune`.
2. `--load` is an HF model folder: its weights, directly (no optimizer state).
3. Otherwise (unset, missing, or empty): start from `--ref-load` (Megatron root or HF folder) at
   `--ref-ckpt-step`, without optimizer state.
4. Neither: the HF weights of `--hf-checkpoint` (our addition: no conversion step needed).

The reference, when a KL term needs one, is `--ref-load`, else `--hf-checkpoint`; the OPD teacher is
`--opd-teacher-load` (`teacher_source`). Pure path logic; nothing loads.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from slime.megatron import checkpoint_layout as layout
from slime.types import ConfigError

Format = Literal["torch_dist", "hf"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """One set of weights to load."""

    format: Format
    path: str
    step: int | None = None
    """torch_dist iteration (None: the tracker's)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LoadPlan:
    """What `MegatronPolicy` loads at start-up."""

    actor: Source
    resume: bool
    """The actor continues a run: iteration counter, and optimizer/RNG unless disabled."""
    load_optim: bool
    load_rng: bool
    ref: Source | None


def _source(path: str, step: int | None, flag: str) -> Source:
    if layout.is_megatron_checkpoint(path):
        return Source(format="torch_dist", path=path, step=step)
    if layout.is_hf_checkpoint(path):
        return Source(format="hf", path=path)
    raise ConfigError(
        f"{flag} {path!r} is neither a torch_dist checkpoint root (no {layout.TRACKER}) nor an HF model folder "
        "(config.json + *.safetensors); fix the path."
    )


def teacher_source(path: str, step: int | None) -> Source:
    """The OPD teacher's weights (`--opd-teacher-load`, `--opd-teacher-ckpt-step`): torch_dist root or HF folder."""
    return _source(path, step, "--opd-teacher-load")


def plan_loading(
    *,
    hf_checkpoint: str,
    load: str | None,
    ckpt_step: int | None,
    ref_load: str | None,
    ref_ckpt_step: int | None,
    no_load_optim: bool,
    no_load_rng: bool,
    finetune: bool,
    need_ref: bool,
) -> LoadPlan:
    """Apply the rules of the module docstring."""
    resume = load is not None and layout.is_megatron_checkpoint(load)
    if resume:
        actor = Source(format="torch_dist", path=load, step=ckpt_step)
    elif load is not None and layout.is_hf_checkpoint(load):
        actor = Source(format="hf", path=load)
    elif ref_load is not None:
        actor = _source(ref_load, ref_ckpt_step, "--ref-load")
    else:
        actor = _source(hf_checkpoint, None, "--hf-checkpoint")
    ref = None
    if need_ref:
        ref = (
            _source(ref_load, ref_ckpt_step, "--ref-load")
            if ref_load
            else _source(hf_checkpoint, None, "--hf-checkpoint")
        )
    full_resume = resume and not finetune
    return LoadPlan(
        actor=actor,
        resume=full_resume,
        load_optim=full_resume and not no_load_optim,
        load_rng=full_resume and not no_load_rng,
        ref=ref,
    )
