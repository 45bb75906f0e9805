"""Bucket planning: named tensors -> size-bounded, single-dtype buckets, each flattened into one byte buffer.

`plan_buckets` decides which tensor goes where (from names, shapes and dtypes only, so every rank and every
engine can plan identically); `flatten_bucket` copies tensors into one contiguous `uint8` buffer and
`unflatten_bucket` gives the tensors back as views of such a buffer. A `BucketManifest` round-trips through
JSON and `from_dict` validates everything a receiver must trust (offsets inside the buffer, no overlaps,
sizes matching shapes and dtypes), raising `WeightSyncError` on a garbled manifest. Nothing here moves data
between processes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from slime.sync.dtypes import dtype_name, element_size, parse_dtype
from slime.types import ConfigError, ContractError, WeightSyncError

DEFAULT_BUCKET_BYTES = 512 * 1024 * 1024
"""slime's `--update-weight-buffer-size` default (512 MiB)."""

ALIGNMENT = 64
"""Byte alignment of every tensor inside a bucket: a multiple of every element size and of a cache line, so each
view is aligned for vectorised loads and `view(dtype)` is always legal."""


@dataclasses.dataclass(frozen=True, slots=True)
class TensorSpec:
    """What the planner needs to know about one weight: its HF name, shape and dtype name (`"bfloat16"`)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))  # accept torch.Size and lists

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        return math.prod(self.shape) * element_size(self.dtype)

    @classmethod
    def of(cls, name: str, tensor: torch.Tensor) -> TensorSpec:
        """The spec of a live tensor."""
        return cls(name, tuple(tensor.shape), dtype_name(tensor.dtype))


@dataclasses.dataclass(frozen=True, slots=True)
class BucketEntry:
    """One tensor inside a bucket: its bytes are `buffer[offset : offset + nbytes]`."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    nbytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "offset": self.offset,
            "nbytes": self.nbytes,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class BucketManifest:
    """A bucket: `nbytes` of one buffer holding `entries` (all of dtype `dtype`) at aligned offsets."""

    index: int
    dtype: str
    nbytes: int
    entries: tuple[BucketEntry, ...]

    @property
    def names(self) -> list[str]:
        """Tensor names in buffer order."""
        return [e.name for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; `BucketManifest.from_dict(m.to_dict()) == m`."""
        return {
            "index": self.index,
            "dtype": self.dtype,
            "nbytes": self.nbytes,
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: Any) -> BucketManifest:
        """Parse and validate a manifest that came over the wire.

        Raises:
            WeightSyncError: a field is missing or has the wrong type, a dtype is unknown, an entry's size does
                not match its shape and dtype, entries overlap or leave the buffer.
        """
        try:
            entries = tuple(_parse_entry(e) for e in data["entries"])
            dtype = dtype_name(parse_dtype(data["dtype"]))
            manifest = cls(index=_nonneg(data["index"]), dtype=dtype, nbytes=_nonneg(data["nbytes"]), entries=entries)
        except WeightSyncError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WeightSyncError(f"garbled bucket manifest ({type(exc).__name__}: {exc}).") from exc
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Check the invariants a receiver relies on before it views a buffer through this manifest."""
        end = 0
        for e in sorted(self.entries, key=lambda e: (e.offset, e.nbytes)):
            if e.dtype != self.dtype:
                raise WeightSyncError(f"bucket {self.index}: tensor {e.name!r} is {e.dtype}, bucket is {self.dtype}.")
            if e.nbytes != math.prod(e.shape) * element_size(e.dtype):
                raise WeightSyncError(f"bucket {self.index}: tensor {e.name!r} claims {e.nbytes} bytes for {e.shape}.")
            if e.offset % element_size(e.dtype) or e.offset < end or e.offset + e.nbytes > self.nbytes:
                raise WeightSyncError(
                    f"bucket {self.index}: tensor {e.name!r} at offset {e.offset} (+{e.nbytes} bytes) overlaps "
                    f"another tensor, is misaligned or leaves the {self.nbytes}-byte buffer."
                )
            end = e.offset + e.nbytes
        if len({e.name for e in self.entries}) != len(self.entries):
            raise WeightSyncError(f"bucket {self.index}: duplicate tensor names.")


def _nonneg(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _parse_entry(data: Any) -> BucketEntry:
    name = data["name"]
    if not isinstance(name, str):
        raise TypeError(f"tensor name must be a string, got {name!r}")
    shape = tuple(_nonneg(d) for d in data["shape"])
    dtype = dtype_name(parse_dtype(data["dtype"]))
    return BucketEntry(name, shape, dtype, _nonneg(data["offset"]), _nonneg(data["nbytes"]))


def _align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def plan_buckets(specs: Sequence[TensorSpec], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list[BucketManifest]:
    """Group `specs` into buckets of one dtype each, at most `bucket_bytes` long.

    Tensors keep their input order within a dtype. A tensor larger than `bucket_bytes` gets a bucket of its own
    (that bucket is then longer than the limit); every other bucket holds at most `bucket_bytes` bytes,
    alignment padding included. Buckets are numbered in the order they are closed, which is deterministic.

    Raises:
        ConfigError: `bucket_bytes` is not positive.
        ContractError: two specs share a name.
    """
    if bucket_bytes <= 0:
        raise ConfigError(f"bucket_bytes={bucket_bytes} must be positive; use e.g. 512 MiB = {DEFAULT_BUCKET_BYTES}.")
    seen: set[str] = set()
    done: list[tuple[str, list[BucketEntry], int]] = []
    open_buckets: dict[str, tuple[list[BucketEntry], int]] = {}
    for spec in specs:
        if spec.name in seen:
            raise ContractError(f"tensor name {spec.name!r} appears twice; weight names must be unique.")
        seen.add(spec.name)
        nbytes = spec.nbytes
        if nbytes > bucket_bytes:
            done.append((spec.dtype, [BucketEntry(spec.name, spec.shape, spec.dtype, 0, nbytes)], nbytes))
            continue
        entries, end = open_buckets.get(spec.dtype, ([], 0))
        offset = _align(end) if entries else 0
        if offset + nbytes > bucket_bytes:
            done.append((spec.dtype, entries, end))
            entries, offset = [], 0
        entries.append(BucketEntry(spec.name, spec.shape, spec.dtype, offset, nbytes))
        open_buckets[spec.dtype] = (entries, offset + nbytes)
    done.extend((dtype, entries, end) for dtype, (entries, end) in open_buckets.items())
    return [BucketManifest(i, dtype, end, tuple(entries)) for i, (dtype, entries, end) in enumerate(done)]


def flatten_bucket(
    manifest: BucketManifest,
    tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    *,
    out: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Copy the bucket's tensors into one contiguous `uint8` buffer of `manifest.nbytes` bytes and return it.

    Args:
        manifest: from `plan_buckets`.
        tensors: by name, or in manifest order.
        out: a `uint8` buffer of exactly `manifest.nbytes` bytes to fill (e.g. shared memory); else a new one.
        device: where a new buffer lives (default: the first tensor's device, or the CPU for an empty bucket).

    Raises:
        WeightSyncError: a tensor is missing or its shape / dtype differs from the manifest.
    """
    ordered = [tensors[e.name] for e in manifest.entries] if isinstance(tensors, Mapping) else list(tensors)
    if len(ordered) != len(manifest.entries):
        raise WeightSyncError(f"bucket {manifest.index}: {len(ordered)} tensors for {len(manifest.entries)} entries.")
    if out is None:
        device = device if device is not None else (ordered[0].device if ordered else "cpu")
        out = torch.empty(manifest.nbytes, dtype=torch.uint8, device=device)
    elif out.dtype != torch.uint8 or out.numel() != manifest.nbytes:
        raise WeightSyncError(f"bucket {manifest.index}: `out` must be uint8 with {manifest.nbytes} elements.")
    for entry, tensor in zip(manifest.entries, ordered, strict=True):
        if tuple(tensor.shape) != entry.shape or dtype_name(tensor.dtype) != entry.dtype:
            raise WeightSyncError(
                f"tensor {entry.name!r} is {tuple(tensor.shape)} {tensor.dtype}; the manifest says {entry.shape} "
                f"{entry.dtype}."
            )
        if entry.nbytes:
            out[entry.offset : entry.offset + entry.nbytes].view(tensor.dtype).view(tensor.shape).copy_(tensor)
    return out


def unflatten_bucket(manifest: BucketManifest, buffer: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The bucket's tensors as views of `buffer` (no copy), in manifest order.

    Raises:
        WeightSyncError: `buffer` is not a contiguous buffer of exactly `manifest.nbytes` bytes.
    """
    if not buffer.is_contiguous():
        raise WeightSyncError(f"bucket {manifest.index}: buffer must be contiguous.")
    flat = buffer.reshape(-1)
    flat = flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat
    if flat.numel() != manifest.nbytes:
        raise WeightSyncError(f"bucket {manifest.index}: buffer has {flat.numel()} bytes, manifest {manifest.nbytes}.")
    views = []
    for e in manifest.entries:
        dtype = parse_dtype(e.dtype)
        views.append((e.name, flat[e.offset : e.offset + e.nbytes].view(dtype).view(e.shape)))
    return views


def split_parts(manifests: Sequence[BucketManifest], max_part_bytes: int | None) -> list[list[BucketManifest]]:
    """Consecutive groups of buckets of at most `max_part_bytes` each (a bucket larger than that is alone).

    `None` keeps everything in one part: the receiver then applies the whole version at once. An empty plan
    still gives one (empty) part, so that a publish of no tensors still carries its version.
    """
    if max_part_bytes is None:
        return [list(manifests)]
    parts: list[list[BucketManifest]] = [[]]
    size = 0
    for m in manifests:
        if parts[-1] and size + m.nbytes > max_part_bytes:
            parts.append([])
            size = 0
        parts[-1].append(m)
        size += m.nbytes
    return parts


def parse_manifests(data: Any, expected_count: Any) -> list[BucketManifest]:
    """Validate a payload's list of manifest dicts (`expected_count` of them, to catch a truncated list);
    tensor names must be unique across all of them."""
    if not isinstance(data, list):
        raise WeightSyncError(f"payload `buckets` must be a list, got {type(data).__name__}.")
    if len(data) != expected_count:
        raise WeightSyncError(f"payload lists {len(data)} buckets but announces {expected_count!r}: truncated?")
    manifests = [BucketManifest.from_dict(d) for d in data]
    names = [n for m in manifests for n in m.names]
    if len(set(names)) != len(names):
        raise WeightSyncError("a tensor name appears in two buckets of one payload.")
    return manifests
