"""slime.fsdp DCP checkpoint -> HF, on one process without building the model (the seeds' `convert_fsdp_to_hf.py`).

`--input-dir` is a checkpoint root (its tracker picks the iteration) or one `iter_*` folder written by
`FSDPPolicy.save_checkpoint`. Only the `model.*` entries are read (optimizer state is skipped), as full tensors
whatever the world size that wrote them. Parameter names become HF names (peft's `base_model.model.` prefix and
`.base_layer.` dropped); LoRA adapters are merged as the trainer exports them, `W + (B @ A) * alpha / rank` in
float32, which needs the run's `--lora-alpha`. A tied `lm_head.weight` is not written (HF re-ties it). Before
anything is written the tensors are checked against `--origin-hf-dir`'s config (dense families) or its
weights (others). Weights are cast to `--dtype` (`auto`: the origin's stored dtype); config and tokenizer are
copied from the origin; the folder appears atomically.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from slime.convert.atomic_output import atomic_directory, check_destination
from slime.convert.dcp_folder import DcpFolder
from slime.convert.hf_checkpoint import HFCheckpoint
from slime.convert.hf_writer import write_config_and_assets
from slime.convert.model_layout import SUPPORTED_FAMILIES, ModelLayout
from slime.convert.shape_check import check_shapes
from slime.megatron.model_shape import text_config
from slime.sync.shard_writer import DEFAULT_SHARD_BYTES, ShardWriter
from slime.types import ConfigError, DataError

MODEL_PREFIX = "model."
"""slime.fsdp saves `{"model": ..., "optim": ...}`; DCP flattens it to `model.<parameter name>`."""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_LORA = (".lora_A.", ".lora_B.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class DcpToHfConfig:
    """Flags of `dcp-to-hf`."""

    input_dir: str
    """A slime.fsdp checkpoint root or `iter_*` folder."""
    output_dir: str
    """The HF folder to create."""
    origin_hf_dir: str
    """HF folder of the model trained: config.json and tokenizer of the output."""
    dtype: str = "auto"
    """Weight dtype of the output: auto (the origin's), float32, bfloat16 or float16."""
    lora_alpha: float | None = None
    """The run's `--lora-alpha`; required when the checkpoint holds LoRA adapters."""
    force: bool = False
    """Replace an existing `output_dir`."""
    chunk_size: int = DEFAULT_SHARD_BYTES
    """Bytes per safetensors shard."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        for field in ("input_dir", "output_dir", "origin_hf_dir"):
            if not getattr(self, field):
                raise ConfigError(f"`{field}` is empty; pass --{field.replace('_', '-')}.")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ConfigError(f"`dtype` is {self.dtype!r}; pass --dtype auto, {', '.join(DTYPES)}.")
        if self.chunk_size < 1:
            raise ConfigError(f"`chunk_size` is {self.chunk_size}; pass a positive --chunk-size (bytes).")


def open_fsdp_checkpoint(path: str | Path) -> DcpFolder:
    """The iteration folder of a slime.fsdp checkpoint (root or `iter_*`), opened for reading."""
    from slime.fsdp.checkpoint import resolve

    folder = resolve(path)
    if folder is None:
        raise DataError(
            f"--input-dir {str(path)!r} holds no slime.fsdp checkpoint (no latest_checkpointed_iteration.txt and "
            "no meta.json); point it at the run's --save folder or one iter_* folder in it."
        )
    return DcpFolder(folder)


def weight_plan(folder: DcpFolder, *, tied: bool) -> dict[str, tuple[str, str | None, str | None]]:
    """HF name -> (base key, LoRA A key or None, LoRA B key or None) for every weight in the checkpoint."""
    from slime.fsdp.hf_export import hf_name

    keys = [k for k in folder.tensor_infos(MODEL_PREFIX)]
    plan: dict[str, tuple[str, str | None, str | None]] = {}
    for key in keys:
        if any(marker in key for marker in _LORA):
            continue
        name = hf_name(key[len(MODEL_PREFIX) :])
        if tied and name == "lm_head.weight":
            continue
        owner = key.removesuffix(".base_layer.weight")
        lora_a = f"{owner}.lora_A.default.weight" if owner != key else None
        plan[name] = (key, lora_a, lora_a.replace(".lora_A.", ".lora_B.") if lora_a else None)
    return plan


def expected_shapes(origin: HFCheckpoint) -> dict[str, tuple[int, ...]]:
    """What the origin's config implies (dense families), else the origin checkpoint's own tensors."""
    if getattr(text_config(origin.config), "model_type", None) in SUPPORTED_FAMILIES:
        return ModelLayout.from_hf_config(origin.config).hf_shapes()
    return origin.shapes()


def _merged(folder: DcpFolder, entry: tuple[str, str | None, str | None], alpha: float | None) -> torch.Tensor:
    base_key, a_key, b_key = entry
    if a_key is None or a_key not in folder.tensor_infos():
        return folder.load([base_key])[base_key]
    assert alpha is not None  # dcp_to_hf checks it before writing
    t = folder.load([base_key, a_key, b_key])
    rank = t[a_key].shape[0]
    merged = t[base_key].float() + (t[b_key].float() @ t[a_key].float()) * (alpha / rank)
    return merged.to(t[base_key].dtype)


def dcp_to_hf(config: DcpToHfConfig) -> Path:
    """Convert (see the module docstring); returns the published output folder."""
    origin = HFCheckpoint(config.origin_hf_dir, flag="--origin-hf-dir")
    folder = open_fsdp_checkpoint(config.input_dir)
    plan = weight_plan(folder, tied=bool(getattr(text_config(origin.config), "tie_word_embeddings", False)))
    found = {name: folder.tensor_infos()[key][0] for name, (key, _, _) in plan.items()}
    check_shapes(found, expected_shapes(origin), checkpoint=str(folder.path), config=str(origin.path / "config.json"))
    infos = folder.tensor_infos()
    if config.lora_alpha is None and any(a in infos for _, a, _ in plan.values()):
        raise ConfigError("the checkpoint holds LoRA adapters; pass the run's --lora-alpha (slime's default: 16).")
    dtype = origin.weights_dtype() if config.dtype == "auto" else DTYPES[config.dtype]
    check_destination(config.output_dir, force=config.force, flag="--output-dir")
    with atomic_directory(config.output_dir, force=config.force) as tmp:
        writer = ShardWriter(tmp, shard_bytes=config.chunk_size)
        for name, entry in tqdm(plan.items(), desc="DCP -> HF", unit="tensor", disable=config.quiet):
            writer.add(name, _merged(folder, entry, config.lora_alpha).to(dtype))
        writer.finish()
        write_config_and_assets(origin, tmp)
    return Path(config.output_dir)
