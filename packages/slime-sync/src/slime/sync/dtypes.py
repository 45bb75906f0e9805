"""Dtype names on the wire: `torch.dtype` <-> the short string a manifest carries (`"bfloat16"`, `"float32"`).

Only a fixed list of byte-addressable dtypes is accepted, so a garbled manifest cannot name an arbitrary attribute of
the torch module. This module does not convert tensors.
"""

from __future__ import annotations

import torch

from slime.types import WeightSyncError

# Byte-addressable dtypes a weight can have; sub-byte, quantized and complex dtypes are not synced.
_NAMES = (
    "bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
)  # fmt: skip
_BY_NAME: dict[str, torch.dtype] = {name: getattr(torch, name) for name in _NAMES if hasattr(torch, name)}
_NAME_OF: dict[torch.dtype, str] = {value: name for name, value in _BY_NAME.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """The wire name of `dtype` (`torch.bfloat16` -> `"bfloat16"`)."""
    try:
        return _NAME_OF[dtype]
    except KeyError:
        raise WeightSyncError(f"dtype {dtype} cannot be synced (only byte-addressable real dtypes are).") from None


def parse_dtype(name: object) -> torch.dtype:
    """The `torch.dtype` of a wire name; raises `WeightSyncError` for anything that is not a torch dtype name."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise WeightSyncError(f"unknown dtype {name!r} in a weight payload.")
    return _BY_NAME[name]


def element_size(name: str) -> int:
    """Bytes per element of the dtype called `name`."""
    return parse_dtype(name).itemsize
