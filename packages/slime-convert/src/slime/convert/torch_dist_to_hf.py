"""torch_dist -> HF without building a Megatron model: read the DCP files on one process, split, write.

The seeds' `tools/convert_torch_dist_to_hf.py --input-dir .../iter_xxx --output-dir ... --origin-hf-dir ...`:
the origin HF folder gives the architecture, config.json and tokenizer. Before anything is written, every
model tensor of the checkpoint is checked against the shapes the origin config implies (`check_torch_dist`);
optimizer and RNG entries are ignored. Tensors are then loaded one checkpoint key at a time (a stacked key holds
one weight of every layer), split into HF tensors (`megatron_names`), the padded vocabulary is cut to
`--vocab-size` (default: the origin config's), and the shards are written into a temporary folder published
atomically. Dense families only (`model_layout`); MoE checkpoints go through `megatron-to-hf`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tqdm import tqdm

from slime.convert import megatron_names as names
from slime.convert.atomic_output import atomic_directory, check_destination
from slime.convert.dcp_folder import DcpFolder
from slime.convert.hf_checkpoint import HFCheckpoint
from slime.convert.hf_writer import write_config_and_assets
from slime.convert.model_layout import ModelLayout, Shape
from slime.convert.shape_check import check_shapes
from slime.megatron.checkpoint_layout import iteration_dir, read_tracker
from slime.sync.shard_writer import DEFAULT_SHARD_BYTES, ShardWriter
from slime.types import ConfigError, DataError

IGNORED_PREFIXES = ("optimizer.", "rng_state", "opt_param_scheduler")
"""Checkpoint entries that are not model weights."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TorchDistToHfConfig:
    """Flags of `torch-dist-to-hf` (the seeds' `convert_torch_dist_to_hf.py`)."""

    input_dir: str
    """An `iter_XXXXXXX` (or `release`) folder; a checkpoint root means its tracker's iteration."""
    output_dir: str
    """The HF folder to create."""
    origin_hf_dir: str
    """HF folder of the model the checkpoint was trained from: architecture, config.json, tokenizer."""
    vocab_size: int | None = None
    """Embedding rows to keep (Megatron pads the vocabulary); default: the origin config's `vocab_size`."""
    model_name: str | None = None
    """Optional: the HF `model_type` the checkpoint must be; checked against the origin config."""
    force: bool = False
    """Replace an existing `output_dir`."""
    add_missing_from_origin_hf: bool = False
    """Copy tensors of the origin checkpoint that the conversion does not produce."""
    chunk_size: int = DEFAULT_SHARD_BYTES
    """Bytes per safetensors shard."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        for field in ("input_dir", "output_dir", "origin_hf_dir"):
            if not getattr(self, field):
                raise ConfigError(f"`{field}` is empty; pass --{field.replace('_', '-')}.")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ConfigError(f"`vocab_size` is {self.vocab_size}; pass a positive --vocab-size or leave it out.")
        if self.chunk_size < 1:
            raise ConfigError(f"`chunk_size` is {self.chunk_size}; pass a positive --chunk-size (bytes).")


def resolve_iteration_folder(path: str | Path) -> Path:
    """`path` itself when it holds `.metadata`, else the iteration its tracker file names."""
    folder = Path(path)
    if (folder / ".metadata").is_file():
        return folder
    iteration = read_tracker(folder)
    if iteration is None:
        raise ConfigError(
            f"--input-dir {str(folder)!r} is neither a checkpoint folder (.metadata) nor a checkpoint root "
            "(latest_checkpointed_iteration.txt); point it at .../iter_XXXXXXX."
        )
    return iteration_dir(folder, iteration)


def _backend(folder: Path) -> str | None:
    meta = folder / "metadata.json"
    return json.loads(meta.read_text()).get("sharded_backend") if meta.is_file() else None


def model_keys(folder: DcpFolder) -> dict[str, tuple[Shape, object]]:
    """The checkpoint's model tensors (optimizer and RNG entries left out)."""
    infos = folder.tensor_infos()
    return {k: v for k, v in infos.items() if not k.startswith(IGNORED_PREFIXES)}


def per_layer_shapes(keys: dict[str, tuple[Shape, object]]) -> dict[str, Shape]:
    """Checkpoint shapes with stacked layer weights unstacked: `decoder.layers.<i>.<TE suffix>` -> shape."""
    shapes: dict[str, Shape] = {}
    for key, (shape, _) in keys.items():
        is_layer, layer, suffix = names.parse_key(key)
        if not is_layer:
            shapes[key] = shape
        elif layer is not None:
            shapes[f"decoder.layers.{layer}.{suffix}"] = shape
        else:
            shapes |= {f"decoder.layers.{i}.{suffix}": shape[1:] for i in range(shape[0])}
    return shapes


def check_torch_dist(folder: DcpFolder, layout: ModelLayout, *, config: str) -> int:
    """Raise `ConfigError` unless the checkpoint's model tensors fit `layout`; returns the padded vocab size."""
    found = per_layer_shapes(model_keys(folder))
    embedding = found.get("embedding.word_embeddings.weight")
    padded = embedding[0] if embedding else layout.vocab_size
    expected = {
        f"decoder.layers.{i}.{suffix}": shape
        for i in range(layout.num_layers)
        for suffix, shape in names.megatron_layer_shapes(layout).items()
    }
    expected |= names.megatron_global_shapes(layout, padded)
    check_shapes(found, expected, checkpoint=str(folder.path), config=config)
    if padded < layout.vocab_size:
        raise ConfigError(
            f"tensor 'embedding.word_embeddings.weight' has {padded} rows, fewer than the vocabulary of "
            f"{layout.vocab_size} ({config}); pass the right --vocab-size or --origin-hf-dir."
        )
    return padded


def _convert_key(key: str, folder: DcpFolder, layout: ModelLayout, writer: ShardWriter) -> None:
    tensor = folder.load([key])[key]
    is_layer, layer, suffix = names.parse_key(key)
    if not is_layer:
        writer.add(*names.global_to_hf(key, tensor, layout.vocab_size))
        return
    layers = [(layer, tensor)] if layer is not None else list(enumerate(tensor))
    for index, part in layers:
        for name, hf_tensor in names.layer_to_hf(suffix, index, part, layout):
            writer.add(name, hf_tensor)


def _layout(config: TorchDistToHfConfig, origin: HFCheckpoint) -> ModelLayout:
    layout = ModelLayout.from_hf_config(origin.config)
    if config.model_name is not None and config.model_name != layout.family:
        raise ConfigError(
            f"--model-name {config.model_name!r} but --origin-hf-dir's config.json has model_type "
            f"{layout.family!r}; drop --model-name or use the matching origin folder."
        )
    return layout


def torch_dist_to_hf(config: TorchDistToHfConfig) -> Path:
    """Convert (see the module docstring); returns the published output folder."""
    origin = HFCheckpoint(config.origin_hf_dir, flag="--origin-hf-dir")
    layout = _layout(config, origin)
    source = resolve_iteration_folder(config.input_dir)
    if _backend(source) not in (None, "torch_dist"):
        raise DataError(f"{source} is a {_backend(source)!r} checkpoint; only torch_dist is read without Megatron.")
    folder = DcpFolder(source)
    padded = check_torch_dist(folder, layout, config=str(origin.path / "config.json"))
    vocab = config.vocab_size or layout.vocab_size
    if vocab > padded:
        raise ConfigError(f"--vocab-size {vocab} exceeds the checkpoint's {padded} embedding rows; lower it.")
    layout = dataclasses.replace(layout, vocab_size=vocab)
    check_destination(config.output_dir, force=config.force, flag="--output-dir")
    with atomic_directory(config.output_dir, force=config.force) as tmp:
        writer = ShardWriter(tmp, shard_bytes=config.chunk_size)
        for key in tqdm(list(model_keys(folder)), desc="torch_dist -> HF", unit="key", disable=config.quiet):
            _convert_key(key, folder, layout, writer)
        if config.add_missing_from_origin_hf:
            missing = [n for n in origin.tensor_infos if n not in writer.shapes]
            for name, tensor in origin.iter_tensors(missing):
                writer.add(name, tensor)
        writer.finish()
        write_config_and_assets(origin, tmp, vocab_size=vocab)
    return Path(config.output_dir)
