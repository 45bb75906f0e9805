"""FP8 rollout: which weights an FP8 engine expects quantized, and quantizing a stream of HF-named weights for it.

`Fp8QuantPlan.from_hf_config` reads the `quantization_config` of the engine's `--hf-checkpoint` config.json
(`quant_method` "fp8", `fmt` "e4m3", `weight_block_size`, optional `ignored_layers` / `modules_to_not_convert`,
`scale_fmt`). The quantized set is what SGLang builds as FP8 linears: every 2-D `.weight` under `model.layers.`
except norms, embeddings, MoE routers (`mlp.gate`, `shared_expert_gate`) and the ignored modules (matched on
dotted-path boundaries, as SGLang's `is_layer_skipped`). `quantize_for_fp8_engine` yields `(name, fp8)` plus
`(<prefix>.weight_scale_inv, scales)` for those and passes every other tensor through unchanged.
`Fp8Dequantizer` is the engine side for float engines: it pairs `weight` + `weight_scale_inv` back into float
weights. It does not send anything (the transports do) and does not handle other quantization methods (INT4,
per-tensor FP8).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from slime.sync.block_fp8 import FP8_DTYPE, SCALE_FORMATS, dequantize_block_fp8, quantize_block_fp8
from slime.types import ConfigError, WeightSyncError

SCALE_SUFFIX = "_scale_inv"
"""`<prefix>.weight` is stored with `<prefix>.weight_scale_inv`."""
LAYERS_PREFIX = "model.layers."
_NEVER_QUANTIZED = ("gate", "shared_expert_gate")
"""Last module names of the MoE routers (SGLang builds them unquantized)."""
_NEVER_QUANTIZED_PARTS = ("norm", "embed")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Fp8QuantPlan:
    """Block-FP8 settings of an FP8 rollout checkpoint."""

    block_size: tuple[int, int] = (128, 128)
    """`weight_block_size`: rows x columns of weight per scale."""
    ignored_layers: tuple[str, ...] = ()
    """Module paths kept in the training dtype (`ignored_layers` / `modules_to_not_convert`)."""
    scale_fmt: str = "float32"
    """`float32` scales, or `ue8m0` (rounded up to powers of two, DeepGEMM's format)."""

    def __post_init__(self) -> None:
        if len(self.block_size) != 2 or any(not isinstance(b, int) or b < 1 for b in self.block_size):
            raise ConfigError(
                f"`weight_block_size` is {list(self.block_size)!r}; pass two positive integers, e.g. [128, 128]."
            )
        if self.scale_fmt not in SCALE_FORMATS:
            raise ConfigError(f"`scale_fmt` is {self.scale_fmt!r}; pass one of {', '.join(SCALE_FORMATS)}.")

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> Fp8QuantPlan | None:
        """The plan of an HF config.json dict; `None` when it has no `quantization_config` or another method.

        Raises `ConfigError` for an FP8 config this quantizer cannot reproduce (per-tensor, e5m2, static
        activations).
        """
        quant = config.get("quantization_config") or config.get("text_config", {}).get("quantization_config")
        if not quant or quant.get("quant_method") != "fp8":
            return None
        where = "config.json quantization_config"
        if quant.get("weight_block_size") is None:
            raise ConfigError(
                f"{where} has no `weight_block_size` (per-tensor FP8); FP8 rollout supports block-wise FP8 only: "
                "convert the BF16 model with `slime-convert hf-to-fp8`."
            )
        if quant.get("fmt", "e4m3") != "e4m3":
            raise ConfigError(f"{where} `fmt` is {quant['fmt']!r}; only 'e4m3' is supported.")
        if quant.get("activation_scheme", "dynamic") != "dynamic":
            raise ConfigError(
                f"{where} `activation_scheme` is {quant['activation_scheme']!r}; only 'dynamic' is supported "
                "(static scales would need calibration)."
            )
        ignored = quant.get("ignored_layers") or quant.get("modules_to_not_convert") or ()
        return cls(
            block_size=tuple(quant["weight_block_size"]),  # type: ignore[arg-type]
            ignored_layers=tuple(ignored),
            scale_fmt=quant.get("scale_fmt") or "float32",
        )

    @classmethod
    def from_hf_folder(cls, path: str | os.PathLike[str]) -> Fp8QuantPlan | None:
        """`from_hf_config` of `<path>/config.json`; `None` also when there is no such file (e.g. a hub name)."""
        config = Path(path) / "config.json"
        return cls.from_hf_config(json.loads(config.read_text())) if config.is_file() else None

    def quantization_config(self) -> dict[str, Any]:
        """The `quantization_config` entry of config.json describing this plan (what SGLang's Fp8Config reads)."""
        entry: dict[str, Any] = {
            "quant_method": "fp8",
            "fmt": "e4m3",
            "activation_scheme": "dynamic",
            "weight_block_size": list(self.block_size),
        }
        if self.ignored_layers:
            entry["ignored_layers"] = list(self.ignored_layers)
        if self.scale_fmt != "float32":
            entry["scale_fmt"] = self.scale_fmt
        return entry

    def is_quantized(self, name: str, shape: tuple[int, ...] | torch.Size) -> bool:
        """Whether the HF tensor `name` of `shape` is stored as FP8 in the engine's checkpoint."""
        if len(shape) != 2 or not name.startswith(LAYERS_PREFIX) or not name.endswith(".weight"):
            return False
        module = name.removesuffix(".weight")
        last = module.rsplit(".", 1)[-1]
        if last in _NEVER_QUANTIZED or any(part in last for part in _NEVER_QUANTIZED_PARTS):
            return False
        return not any(_module_path_match(ignored, module) for ignored in self.ignored_layers)


def _module_path_match(ignored: str, module: str) -> bool:
    """SGLang's rule: `ignored` names `module` or one of its parents, on dotted-path boundaries.

    Like SGLang's `Fp8Config`, `model.` is optional on either side.
    """
    ignored = ignored.rstrip(".").removeprefix("model.")
    module = module.removeprefix("model.")
    return module == ignored or module.startswith(ignored + ".") or f".{ignored}." in f".{module}."


def scale_name(weight_name: str) -> str:
    """`<prefix>.weight` -> `<prefix>.weight_scale_inv`."""
    return weight_name + SCALE_SUFFIX


def quantize_for_fp8_engine(
    named_tensors: Iterable[tuple[str, torch.Tensor]], plan: Fp8QuantPlan
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield the tensors an FP8 engine loads: quantized weights followed by their scales, others unchanged.

    Lazy: one weight is quantized at a time, on its own device.
    """
    for name, tensor in named_tensors:
        if not plan.is_quantized(name, tensor.shape):
            yield name, tensor
            continue
        q, scale = quantize_block_fp8(tensor, plan.block_size, scale_fmt=plan.scale_fmt, name=name)
        yield name, q
        yield scale_name(name), scale


class Fp8Dequantizer:
    """Turns `(<p>.weight fp8, <p>.weight_scale_inv)` pairs back into float `<p>.weight` for a float engine.

    A pair may be split across calls (the bucket planner groups tensors by dtype, split publishes cut between
    parts): an unpaired half is kept (copied) until its partner arrives. Other tensors pass through unchanged.
    """

    def __init__(self, block_size: tuple[int, int], *, dtype: torch.dtype = torch.float32) -> None:
        self.block_size = block_size
        self.dtype = dtype
        self.pending: dict[str, torch.Tensor] = {}
        """Unpaired halves by name (an FP8 weight waiting for its scale, or the reverse)."""

    def dequantize(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
        """The float tensors to load now: completed pairs dequantized to `dtype`, other tensors unchanged."""
        out: list[tuple[str, torch.Tensor]] = []
        for name, tensor in named_tensors:
            if name.endswith(".weight" + SCALE_SUFFIX):
                weight_name = other_name = name.removesuffix(SCALE_SUFFIX)
            elif tensor.dtype == FP8_DTYPE:
                weight_name, other_name = name, scale_name(name)
            else:
                out.append((name, tensor))
                continue
            other = self.pending.pop(other_name, None)
            if other is None:
                self.pending[name] = tensor.clone()
                continue
            q, scale = (tensor, other) if name == weight_name else (other, tensor)
            deq = dequantize_block_fp8(q, scale, self.block_size, dtype=self.dtype, name=weight_name)
            out.append((weight_name, deq))
        return out

    def check_complete(self, source: str) -> None:
        """Raise `WeightSyncError` if a half is still unpaired after all of `source` was read."""
        if self.pending:
            names = ", ".join(sorted(self.pending)[:4])
            raise WeightSyncError(
                f"{source} holds FP8 weights or weight_scale_inv without their partner ({names}); every "
                "float8_e4m3fn `<p>.weight` needs its `<p>.weight_scale_inv` (quantize_for_fp8_engine sends both)."
            )
