"""HF -> slime.fsdp DCP checkpoint, written by the FSDP trainer itself so the format is exactly its own.

The HF weights are first checked against their config (dense families: every tensor name and shape). Then an
`FSDPPolicy` is built from the folder on every rank (a world of one, or torchrun's, FSDP-sharded) and saved with
`save_checkpoint(rollout_id)`: `<save>/iter_<rollout_id>/` with the float32 weights, a fresh AdamW state, the LR
schedule of the given optimizer flags at step 0, and the tracker file. `--load <save>` then resumes at rollout
`rollout_id + 1`; pass the run's optimizer flags here, since the saved schedule is what resumes. The root is
built as `<save>.tmp-XXXX` and renamed once complete.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from slime.convert.atomic_output import check_destination, discard, publish, shared_temporary
from slime.convert.hf_checkpoint import HFCheckpoint
from slime.convert.model_layout import SUPPORTED_FAMILIES, ModelLayout
from slime.convert.shape_check import check_shapes
from slime.megatron.model_shape import text_config
from slime.types import ConfigError

OPTIMIZER_FIELDS = (
    "lr",
    "min_lr",
    "lr_decay_style",
    "lr_warmup_iters",
    "lr_warmup_init",
    "lr_decay_iters",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_eps",
)
"""`FSDPConfig` fields that shape the saved optimizer and LR-schedule state (flags `--lr`, `--min-lr`...)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HfToDcpConfig:
    """Flags of `hf-to-dcp`."""

    hf_checkpoint: str
    """HF model folder."""
    save: str
    """Checkpoint root to create (slime.fsdp's `--save` layout)."""
    rollout_id: int = 0
    """The checkpoint poses as saved after this rollout."""
    optimizer: dict = dataclasses.field(default_factory=dict)
    """`FSDPConfig` optimizer fields (`OPTIMIZER_FIELDS`) given on the command line."""
    force: bool = False
    """Replace an existing `save` folder."""

    def __post_init__(self) -> None:
        if not self.hf_checkpoint or not self.save:
            raise ConfigError("hf-to-dcp needs both --hf-checkpoint and --save.")
        if self.rollout_id < 0:
            raise ConfigError(f"`rollout_id` is {self.rollout_id}; pass --rollout-id >= 0.")
        unknown = sorted(set(self.optimizer) - set(OPTIMIZER_FIELDS))
        if unknown:
            raise ConfigError(f"`optimizer` has unknown fields {unknown}; allowed: {OPTIMIZER_FIELDS}.")


def validate_hf_folder(hf: HFCheckpoint) -> None:
    """Dense families: the weights must match the config tensor by tensor (others are checked by transformers)."""
    if getattr(text_config(hf.config), "model_type", None) in SUPPORTED_FAMILIES:
        layout = ModelLayout.from_hf_config(hf.config)
        check_shapes(hf.shapes(), layout.hf_shapes(), checkpoint=str(hf.path), config=str(hf.path / "config.json"))


def hf_to_dcp(config: HfToDcpConfig) -> Path:
    """Convert (collective over a torchrun world, if any); returns the checkpoint root."""
    from slime.fsdp import FSDPConfig, FSDPPolicy, init_distributed

    hf = HFCheckpoint(config.hf_checkpoint)
    validate_hf_folder(hf)
    final = check_destination(config.save, force=config.force, flag="--save")
    info = init_distributed()
    tmp = shared_temporary(final)
    try:
        fsdp = FSDPConfig(hf_checkpoint=str(hf.path), save=str(tmp), export_dtype="float32", **config.optimizer)
        FSDPPolicy(fsdp, info).save_checkpoint(config.rollout_id)
    except BaseException:
        if info.rank == 0:
            discard(tmp)
        raise
    if info.rank == 0:
        publish(tmp, final)
    if info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return final
