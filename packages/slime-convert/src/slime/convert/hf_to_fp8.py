"""BF16 HF folder -> block-FP8 HF folder for FP8 rollout (the seeds' `tools/convert_hf_to_fp8.py --strategy block`).

Every weight `slime.sync.fp8_rollout.Fp8QuantPlan` selects (decoder-layer linears) is written as
`float8_e4m3fn` with its `<prefix>.weight_scale_inv` (float32, one scale per `--block-size` square block); every
other tensor is copied unchanged. config.json gains the plan's `quantization_config`, so SGLang loads the folder
as block FP8; the tokenizer and other assets are copied. The folder appears atomically. Training keeps its BF16
checkpoint (`--ref-load`): this folder is only the engines' `--hf-checkpoint`. It does not quantize per channel
or per tensor.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from tqdm import tqdm

from slime.convert.atomic_output import atomic_directory, check_destination
from slime.convert.hf_checkpoint import HFCheckpoint
from slime.sync.fp8_rollout import Fp8QuantPlan, quantize_for_fp8_engine
from slime.sync.shard_writer import DEFAULT_SHARD_BYTES, ShardWriter
from slime.types import ConfigError, DataError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HfToFp8Config:
    """Flags of `hf-to-fp8`."""

    input_dir: str
    """The BF16 (or FP16 / FP32) HF model folder."""
    output_dir: str
    """The FP8 HF folder to create."""
    block_size: int = 128
    """Rows and columns of weight per scale (`weight_block_size` [block_size, block_size])."""
    scale_fmt: str = "float32"
    """`float32` scales, or `ue8m0` (powers of two, for DeepGEMM)."""
    force: bool = False
    """Replace an existing `output_dir`."""
    chunk_size: int = DEFAULT_SHARD_BYTES
    """Bytes per safetensors shard."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        for field in ("input_dir", "output_dir"):
            if not getattr(self, field):
                raise ConfigError(f"`{field}` is empty; pass --{field.replace('_', '-')}.")
        if self.block_size < 1:
            raise ConfigError(f"`block_size` is {self.block_size}; pass a positive --block-size (128 for SGLang).")
        if self.chunk_size < 1:
            raise ConfigError(f"`chunk_size` is {self.chunk_size}; pass a positive --chunk-size (bytes).")

    def plan(self) -> Fp8QuantPlan:
        """The quantization this conversion applies (raises `ConfigError` for a bad `scale_fmt`)."""
        return Fp8QuantPlan(block_size=(self.block_size, self.block_size), scale_fmt=self.scale_fmt)


def fp8_config_dict(origin: HFCheckpoint, plan: Fp8QuantPlan) -> dict:
    """The origin's config.json with the plan's `quantization_config`; `ConfigError` if it is already quantized."""
    config = origin.config_dict()
    existing = config.get("quantization_config")
    if existing:
        raise ConfigError(
            f"--input-dir {str(origin.path)!r} is already quantized (config.json quantization_config "
            f"{existing!r}); pass the BF16 model folder."
        )
    return config | {"quantization_config": plan.quantization_config()}


def hf_to_fp8(config: HfToFp8Config) -> Path:
    """Convert (see the module docstring); returns the published output folder."""
    plan = config.plan()
    origin = HFCheckpoint(config.input_dir, flag="--input-dir")
    fp8_config = fp8_config_dict(origin, plan)
    names = list(origin.tensor_infos)
    if not any(plan.is_quantized(name, shape) for name, (shape, _) in origin.tensor_infos.items()):
        raise DataError(
            f"--input-dir {str(origin.path)!r} has no 2-D `model.layers.*.weight` to quantize; FP8 rollout expects an "
            "HF decoder checkpoint (model.layers.N.self_attn.q_proj.weight, ...)."
        )
    check_destination(config.output_dir, force=config.force, flag="--output-dir")
    with atomic_directory(config.output_dir, force=config.force) as tmp:
        writer = ShardWriter(tmp, shard_bytes=config.chunk_size)
        tensors = tqdm(origin.iter_tensors(names), total=len(names), desc="HF -> FP8", disable=config.quiet)
        for name, tensor in quantize_for_fp8_engine(tensors, plan):
            writer.add(name, tensor)
        writer.finish()
        (tmp / "config.json").write_text(json.dumps(fp8_config, indent=2, sort_keys=True) + "\n")
        for asset in origin.asset_files():
            shutil.copy2(asset, tmp / asset.name)
    return Path(config.output_dir)
