"""HF -> Megatron torch_dist: the seeds' `tools/convert_hf_to_torch_dist.py --hf-checkpoint ... --save ...`.

The model shape comes from the HF config; Megatron shape flags (`${MODEL_ARGS[@]}`) are optional and must agree
with it (`slime.megatron.resolve_model_shape`). Before anything is written the HF weights are checked against
the config (`model_layout`, tensor names and shapes). Every rank then builds its part of the model through
slime.megatron's mbridge adapter, loads the HF weights into it and saves with Megatron's dist_checkpointing as
a `release` checkpoint (tracker `release`, no optimizer or RNG state; use it as `--ref-load` or `--load` with
`--finetune`). Parameters keep the dtype the HF weights are stored in unless --bf16/--fp16 is given. Under
torchrun with N ranks and no parallel flags, PP is the largest degree dividing both N and the layer count. The
whole `--save` folder is built as `<save>.tmp-XXXX` and renamed once every rank has finished.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tqdm import tqdm

from slime.convert import megatron_world as world
from slime.convert.atomic_output import check_destination, discard, publish, shared_temporary
from slime.convert.hf_checkpoint import HFCheckpoint
from slime.convert.model_layout import ModelLayout
from slime.convert.shape_check import check_shapes
from slime.megatron import resolve_model_shape
from slime.types import ConfigError

RELEASE = "release"
"""Iteration name of converted checkpoints (Megatron-LM's convention for weights not produced by training)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HfToTorchDistConfig:
    """Flags of `hf-to-torch-dist` besides Megatron's own."""

    hf_checkpoint: str
    """HF model folder (config.json + safetensors)."""
    save: str
    """Checkpoint root to create (`<save>/release/`, `<save>/latest_checkpointed_iteration.txt`)."""
    force: bool = False
    """Replace an existing `save` folder."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        if not self.hf_checkpoint or not self.save:
            raise ConfigError("hf-to-torch-dist needs both --hf-checkpoint and --save.")


def validate_hf(hf: HFCheckpoint) -> ModelLayout:
    """Check the HF weights against their config; returns the layout."""
    layout = ModelLayout.from_hf_config(hf.config)
    check_shapes(hf.shapes(), layout.hf_shapes(), checkpoint=str(hf.path), config=str(hf.path / "config.json"))
    return layout


def _parallel_defaults(ns: argparse.Namespace, layout: ModelLayout, world_size: int) -> argparse.Namespace:
    explicit = getattr(ns, "explicit", frozenset())
    if world_size > 1 and "pipeline_model_parallel_size" not in explicit:
        ns.pipeline_model_parallel_size = world.default_pipeline(
            world_size, layout.num_layers, ns.tensor_model_parallel_size
        )
    return ns


def _check_padded_vocab(ns: argparse.Namespace, layout: ModelLayout) -> None:
    if ns.padded_vocab_size is None:
        return
    divisor = ns.make_vocab_size_divisible_by * ns.tensor_model_parallel_size
    padded = -(-layout.vocab_size // divisor) * divisor
    if ns.padded_vocab_size != padded:
        raise ConfigError(
            f"--padded-vocab-size {ns.padded_vocab_size}: the vocabulary of {layout.vocab_size} is padded to a "
            f"multiple of --make-vocab-size-divisible-by x TP = {divisor}, i.e. {padded}; drop the flag or change "
            "--make-vocab-size-divisible-by."
        )


def prepare(config: HfToTorchDistConfig, megatron_args: argparse.Namespace, world_size: int):
    """Everything checked before the world starts: returns (HF folder, resolved namespace, destination)."""
    from slime.convert.megatron_model import conversion_namespace

    hf = HFCheckpoint(config.hf_checkpoint)
    layout = validate_hf(hf)
    ns = conversion_namespace(megatron_args, hf.weights_dtype())
    ns = _parallel_defaults(ns, layout, world_size)
    resolve_model_shape(ns, hf.config)
    _check_padded_vocab(ns, layout)
    return hf, ns, check_destination(config.save, force=config.force, flag="--save")


def hf_to_torch_dist(config: HfToTorchDistConfig, megatron_args: argparse.Namespace, world_size: int = 1) -> Path:
    """Convert (collective over the torchrun world); returns the checkpoint root."""
    hf, ns, final = prepare(config, megatron_args, world_size)  # before megatron is even imported
    from slime.convert.megatron_model import build_weights_stack
    from slime.megatron import training_configs
    from slime.megatron.checkpoint import save_torch_dist

    steps = tqdm(total=3, desc="HF -> torch_dist", unit="step", disable=config.quiet or not world.is_rank0())
    world.start(training_configs.parallel_sizes(ns))
    stack = build_weights_stack(ns, hf.config)
    steps.update()
    stack.bridge.load_hf_weights(stack.modules, str(hf.path))
    steps.update()
    tmp = shared_temporary(final)
    try:
        save_torch_dist(stack, tmp, RELEASE, save_optim=False, save_rng=False)
    except BaseException:
        if world.is_rank0():
            discard(tmp)
        raise
    if world.is_rank0():
        publish(tmp, final)
    world.barrier()
    steps.update()
    steps.close()
    return final
