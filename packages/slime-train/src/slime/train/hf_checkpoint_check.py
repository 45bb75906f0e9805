"""Does `--hf-checkpoint`'s weights agree with its config? Checked from file headers before anything loads it.

`check_hf_checkpoint(path)` reads `config.json`, builds the model it describes on the meta device (no memory, no
weights) and compares its parameter shapes with the tensor shapes in the `*.safetensors` headers: a tensor of
another shape, or one the config needs that the checkpoint lacks (a tied `lm_head` excepted), raises one
`ConfigError` listing the tensors, both shapes and the fix. Architectures whose checkpoints transformers renames or
fuses on load (`get_checkpoint_conversion_mapping`, e.g. MoE experts) are only checked on the names both sides
share. Extra tensors in the checkpoint are ignored (many carry MTP heads or buffers). It reads headers only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slime.types import ConfigError

_SHOWN = 8
_FIX = "point --hf-checkpoint at the folder the weights were saved with, or restore its config.json"


def _config(folder: Path) -> Any:
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise ConfigError(f"--hf-checkpoint {str(folder)!r} has no config.json; pass an HF model folder.")
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--hf-checkpoint {str(folder)!r}: config.json does not load ({exc}). Fix: {_FIX}.") from exc


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors headers of an HF folder (index file or every shard)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"--hf-checkpoint {str(folder)!r} holds no *.safetensors weights; pass an HF model folder.")
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"--hf-checkpoint: {file} is not a readable safetensors file ({exc}).") from exc
    return shapes


def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the causal LM `config` describes (built on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        shapes.pop("lm_head.weight", None)
    return shapes


def shape_problems(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], *, check_missing: bool
) -> list[str]:
    """One line per tensor of another shape, and (with `check_missing`) per tensor the checkpoint lacks."""
    problems = [
        f"{name}: checkpoint {found[name]}, config implies {shape}"
        for name, shape in expected.items()
        if name in found and tuple(found[name]) != tuple(shape)
    ]
    if check_missing:
        problems += [f"{name}: missing (config implies {shape})" for name, shape in expected.items()
                     if name not in found]  # fmt: skip
    return problems


def check_hf_checkpoint(path: str) -> None:
    """Raise `ConfigError` when the weights under `path` do not fit its config (see the module docstring)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    folder = Path(path)
    config = _config(folder)
    try:
        expected = expected_shapes(config)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"--hf-checkpoint {path!r}: its config.json does not describe a causal LM ({exc}).") from exc
    renamed = get_checkpoint_conversion_mapping(getattr(config, "model_type", "")) is not None
    problems = shape_problems(checkpoint_shapes(folder), expected, check_missing=not renamed)
    if problems:
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise ConfigError(
            f"--hf-checkpoint {path!r}: the weights do not match config.json ({len(problems)} tensors):\n  "
            + "\n  ".join(problems[:_SHOWN])
            + more
            + f"\nFix: {_FIX}."
        )
