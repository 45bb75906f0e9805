"""The raw bytes of a tensor: a flat `uint8` view, zero-copy buffers for hashing / (de)compression, and checksums.

Checksums are SHA-1 of the tensor's bytes in row-major order, so they do not depend on strides or device.
They guard against corruption and against a receiver diffing from the wrong base, not against an attacker
(who is kept out by the peer rules): SHA-1 is chosen because CPUs hash it in hardware, 2.3x BLAKE2b's speed
on our CI machines, and every changed byte of a delta is hashed on both sides.
It never changes a tensor except through a buffer the caller asked to write.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Iterable, Mapping

import torch

from slime.types import WeightSyncError


def as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """A flat `uint8` tensor over the bytes of `tensor` (a view when it is contiguous, else a contiguous copy)."""
    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat


def host_buffer(tensor: torch.Tensor) -> memoryview:
    """A zero-copy, read-only buffer over the bytes of `tensor` (copied to the CPU first when it is elsewhere).

    hashlib and zstandard read it directly, so hashing or compressing 1 GiB does not duplicate it in Python.
    The memoryview keeps the underlying tensor alive.
    """
    flat = as_bytes(tensor)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if flat.numel() == 0:
        return memoryview(b"")
    raw = (ctypes.c_char * flat.numel()).from_address(flat.data_ptr())
    raw.keepalive = flat  # the buffer points into `flat`'s storage
    return memoryview(raw).cast("B").toreadonly()


def writable_buffer(tensor: torch.Tensor) -> memoryview:
    """A zero-copy, writable buffer over a contiguous CPU `uint8` tensor (to fill it from a decompressor)."""
    if tensor.dtype != torch.uint8 or tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise ValueError("writable_buffer needs a contiguous CPU uint8 tensor")
    if tensor.numel() == 0:
        return memoryview(bytearray())
    raw = (ctypes.c_char * tensor.numel()).from_address(tensor.data_ptr())
    raw.keepalive = tensor
    return memoryview(raw).cast("B")


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-1 hex digest of the tensor's bytes (row-major); equal bytes give equal checksums on any device."""
    return hashlib.sha1(host_buffer(tensor), usedforsecurity=False).hexdigest()


def verify_checksums(tensors: Iterable[tuple[str, torch.Tensor]], expected: Mapping[str, str]) -> None:
    """Raise `WeightSyncError` naming the first tensor whose checksum is missing from `expected` or differs."""
    for name, tensor in tensors:
        want = expected.get(name)
        if want is None:
            raise WeightSyncError(f"no checksum for tensor {name!r} in the payload; publish with checksums=True.")
        got = tensor_checksum(tensor)
        if got != want:
            raise WeightSyncError(f"checksum mismatch for tensor {name!r}: payload says {want}, bytes give {got}.")
