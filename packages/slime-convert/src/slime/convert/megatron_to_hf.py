"""Any Megatron checkpoint -> HF through the trainer's weight-export path (the seeds' `tools/convert_to_hf.py`).

Run it like training, under torchrun with as many ranks as TP x PP (x EP) need, keeping the training flags and
adding `--output-dir`: the model is built from `--hf-checkpoint` and the Megatron flags exactly as the trainer
builds it (`slime.megatron`, mbridge), the checkpoint of `--load` (`--ckpt-step`, or the tracker's) is loaded,
torch_dist through `slime.megatron.checkpoint`, `--ckpt-format torch` through `legacy_checkpoint`, and the
weights leave through `slime.megatron.export` (TP gather, PP broadcast, mbridge's HF names, vocabulary padding
cut), as they do for weight sync. Flags it does not know (rollout, SGLang...) are ignored. The parameter dtype
is the one the checkpoint stores. Rank 0 writes the shards and copies config and tokenizer from
`--hf-checkpoint`, after checking the exported tensors against that config; the folder appears atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from slime.convert import megatron_world as world
from slime.convert.atomic_output import atomic_directory, check_destination
from slime.convert.dcp_folder import DcpFolder
from slime.convert.hf_checkpoint import HFCheckpoint
from slime.convert.hf_writer import write_config_and_assets
from slime.convert.model_layout import SUPPORTED_FAMILIES, ModelLayout
from slime.convert.shape_check import check_shapes
from slime.convert.torch_dist_to_hf import check_torch_dist, model_keys
from slime.megatron import resolve_model_shape
from slime.megatron.checkpoint_layout import iteration_dir, resolve_iteration
from slime.megatron.model_shape import text_config
from slime.sync.shard_writer import DEFAULT_SHARD_BYTES, ShardWriter
from slime.types import ConfigError

FORMATS = ("torch_dist", "torch")
EXPORT_BUCKET_BYTES = 512 * 1024**2
"""Bytes of gathered full tensors materialised at once (slime's `--update-weight-buffer-size` default)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class MegatronToHfConfig:
    """Flags of `megatron-to-hf` besides Megatron's own (`--load`, `--ckpt-step`, parallelism...)."""

    hf_checkpoint: str
    """HF folder of the model trained: architecture, config.json and tokenizer of the output."""
    output_dir: str
    """The HF folder to create."""
    ckpt_format: str = "torch_dist"
    """Format of `--load`: torch_dist, or torch (Megatron-LM's per-rank files)."""
    force: bool = False
    """Replace an existing `output_dir`."""
    chunk_size: int = DEFAULT_SHARD_BYTES
    """Bytes per safetensors shard."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        if not self.hf_checkpoint or not self.output_dir:
            raise ConfigError("megatron-to-hf needs --hf-checkpoint and --output-dir.")
        if self.ckpt_format not in FORMATS:
            raise ConfigError(f"`ckpt_format` is {self.ckpt_format!r}; pass --ckpt-format with one of {FORMATS}.")
        if self.chunk_size < 1:
            raise ConfigError(f"`chunk_size` is {self.chunk_size}; pass a positive --chunk-size (bytes).")


def _dense_layout(hf: HFCheckpoint) -> ModelLayout | None:
    family = getattr(text_config(hf.config), "model_type", None)
    return ModelLayout.from_hf_config(hf.config) if family in SUPPORTED_FAMILIES else None


def _stored_dtype(config: MegatronToHfConfig, ns: argparse.Namespace, hf: HFCheckpoint) -> torch.dtype:
    """dtype of the checkpoint's weights; a torch_dist checkpoint of a dense model is checked against the config."""
    if config.ckpt_format == "torch":
        from slime.convert.legacy_checkpoint import stored_dtype

        return stored_dtype(ns.load, ns.ckpt_step)
    folder = DcpFolder(iteration_dir(ns.load, resolve_iteration(ns.load, ns.ckpt_step)), flag="--load")
    layout = _dense_layout(hf)
    if layout is not None:
        check_torch_dist(folder, layout, config=str(hf.path / "config.json"))
    dtypes = [dtype for _, dtype in model_keys(folder).values()]
    return dtypes[0] if dtypes else torch.float32


def prepare(config: MegatronToHfConfig, megatron_args: argparse.Namespace):
    """Checks made before the world starts: returns (HF folder, namespace in the checkpoint's dtype)."""
    from slime.convert.megatron_model import conversion_namespace

    if megatron_args.load is None:
        raise ConfigError("megatron-to-hf needs --load (the Megatron checkpoint root to convert).")
    hf = HFCheckpoint(config.hf_checkpoint)
    ns = conversion_namespace(megatron_args, _stored_dtype(config, megatron_args, hf))
    resolve_model_shape(ns, hf.config)
    check_destination(config.output_dir, force=config.force, flag="--output-dir")
    return hf, ns


def _check_output(writer: ShardWriter, hf: HFCheckpoint) -> None:
    layout = _dense_layout(hf)
    if layout is not None:
        expected = layout.hf_shapes()
    else:  # families without a layout table: at least the shapes of the tensors both sides have must agree
        expected = {name: shape for name, shape in hf.shapes().items() if name in writer.shapes}
    check_shapes(writer.shapes, expected, checkpoint="exported by the model", config=str(hf.path / "config.json"))


def _load(stack, config: MegatronToHfConfig, ns: argparse.Namespace) -> None:
    if config.ckpt_format == "torch":
        from slime.convert.legacy_checkpoint import load_legacy

        load_legacy(stack, ns.load, ns.ckpt_step)
        return
    from slime.megatron.checkpoint import load_torch_dist

    load_torch_dist(stack, ns.load, step=ns.ckpt_step, load_optim=False, load_rng=False)


def megatron_to_hf(config: MegatronToHfConfig, megatron_args: argparse.Namespace) -> Path:
    """Convert (collective over the torchrun world); returns the output folder."""
    hf, ns = prepare(config, megatron_args)  # before megatron is even imported
    from slime.convert.megatron_model import build_weights_stack
    from slime.megatron import training_configs
    from slime.megatron.export import export_buckets

    world.start(training_configs.parallel_sizes(ns))
    stack = build_weights_stack(ns, hf.config)
    _load(stack, config, ns)
    weights = (pair for bucket in export_buckets(stack, EXPORT_BUCKET_BYTES) for pair in bucket)
    if not world.is_rank0():
        for _ in weights:  # the export is collective: every rank iterates to the end
            pass
        world.barrier()
        return Path(config.output_dir)
    with atomic_directory(config.output_dir, force=config.force) as tmp:
        writer = ShardWriter(tmp, shard_bytes=config.chunk_size)
        for name, tensor in tqdm(weights, desc="Megatron -> HF", unit="tensor", disable=config.quiet):
            writer.add(name, tensor)
        _check_output(writer, hf)
        writer.finish()
        write_config_and_assets(hf, tmp)
    world.barrier()
    return Path(config.output_dir)
