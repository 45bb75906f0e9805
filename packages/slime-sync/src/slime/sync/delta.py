"""Delta transport: only the bytes that changed since the last published version, XOR-encoded and zstd-compressed.

Both sides keep a CPU snapshot of the bytes of the last version they agreed on. The sender encodes each tensor
as `same` (no data), `xor` (zstd of new XOR old, mostly zeros after one RL step) or `full` (zstd of the bytes;
always on the first publish, after `reset`, or when a shape or dtype changed). Each record carries the
checksum (`tensor_checksum`) of the tensor's new bytes; the receiver checks every reconstructed tensor against it and
the base version against its own, so a receiver that missed a version refuses instead of diverging. Applying
the same version twice is a no-op. The compressed blob travels inside the payload (base64) or, with a
`directory`, as a file written atomically next to it. Only changed tensors reach `load_weights`.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import zstandard

from slime.sync.dtypes import dtype_name, element_size, parse_dtype
from slime.sync.handshake import (
    LoadWeights,
    PayloadHeader,
    VersionedReceiver,
    check_newer,
    collect_named_tensors,
    publish_stats,
)
from slime.sync.tensor_bytes import as_bytes, host_buffer, tensor_checksum, writable_buffer
from slime.types import WeightSyncError

TRANSPORT = "delta"
ENCODINGS = ("same", "xor", "full")


class DeltaSender:
    """Trainer side of the delta transport.

    Args:
        deliver: hands the payload to every engine; returns once they applied it. If it raises, the next publish
            is a full one, since engines may now disagree on the base.
        directory: write the blob to `<directory>/delta_v<NNNNNN>.bin` (atomically) instead of inlining it.
        level: zstd level (1 is what slime uses: fast, and XOR deltas are mostly zero bytes anyway).
        workers: threads encoding tensors in parallel (XOR, zstd and hashing release the GIL); default: the
            number of cores, at most 8.
    """

    def __init__(
        self,
        deliver: Callable[[dict[str, Any]], Any],
        *,
        directory: str | os.PathLike[str] | None = None,
        level: int = 1,
        workers: int | None = None,
    ) -> None:
        self._deliver = deliver
        self._directory = None if directory is None else Path(directory)
        self._level = level
        self._workers = workers or _default_workers()
        self._local = threading.local()  # per worker thread: a zstd compressor and an XOR scratch buffer
        self._snapshot: dict[str, tuple[torch.Tensor, str, tuple[int, ...], str]] = {}  # bytes, dtype, shape, sum
        self._base: int | None = None
        self._last: int | None = None

    def reset(self) -> None:
        """Forget the snapshot: the next publish sends every tensor in full."""
        self._snapshot, self._base = {}, None
        self._local = threading.local()

    def publish(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int, *, full: bool = False
    ) -> dict[str, float]:
        """Encode against the snapshot (or in full), deliver, then advance the snapshot.

        Returns bytes (of the weights), seconds, GB/s (weight bytes per second), wire_bytes and changed tensors.
        """
        check_newer(self._last, version)
        started = time.perf_counter()
        if full:
            self.reset()
        tensors = [(n, as_bytes(t).cpu(), t) for n, t in collect_named_tensors(named_tensors)]
        records, frames, changed = self._encode(tensors)
        digest, size = hashlib.sha1(usedforsecurity=False), 0
        for frame in frames:
            digest.update(frame)
            size += len(frame)
        payload = {
            **PayloadHeader(TRANSPORT, version).to_dict(),
            "base_version": self._base,
            "tensors": records,
            "num_tensors": len(records),
            "data_bytes": size,
            "data_checksum": digest.hexdigest(),
        }
        if self._directory is None:
            payload["data"] = base64.b64encode(b"".join(frames)).decode("ascii")
        else:
            payload["file"] = str(self._write_blob(frames, version))
        try:
            self._deliver(payload)
        except BaseException:
            self.reset()
            raise
        self._advance(tensors, records)
        self._base = self._last = version
        self._prune(version)
        nbytes = sum(b.numel() for _, b, _ in tensors)
        return publish_stats(nbytes, started, wire_bytes=float(size), changed_tensors=float(changed))

    def _encode(self, tensors: list[tuple[str, torch.Tensor, torch.Tensor]]) -> tuple[list[dict], list[bytes], int]:
        records, frames, offset, changed = [], [], 0, 0
        for (name, new, original), (encoding, frame, checksum) in zip(
            tensors, _parallel_map(self._encode_one, tensors, self._workers), strict=True
        ):
            changed += encoding != "same"
            records.append(
                {
                    "name": name,
                    "shape": list(original.shape),
                    "dtype": dtype_name(original.dtype),
                    "encoding": encoding,
                    "offset": offset,
                    "length": len(frame),
                    "nbytes": new.numel(),
                    "checksum": checksum,
                }
            )
            frames.append(frame)
            offset += len(frame)
        return records, frames, changed

    def _encode_one(self, item: tuple[str, torch.Tensor, torch.Tensor]) -> tuple[str, bytes, str]:
        name, new, original = item
        old = self._snapshot.get(name)
        if old is None or (old[1], old[2]) != (dtype_name(original.dtype), tuple(original.shape)):
            return "full", self._compressor().compress(host_buffer(new)), tensor_checksum(new)
        if torch.equal(old[0], new):
            return "same", b"", old[3]
        return "xor", self._compressor().compress(host_buffer(self._xor(new, old[0]))), tensor_checksum(new)

    def _compressor(self) -> zstandard.ZstdCompressor:
        if not hasattr(self._local, "compressor"):  # zstd contexts must not be shared between threads
            self._local.compressor = zstandard.ZstdCompressor(level=self._level)
        return self._local.compressor

    def _xor(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        # Into a reused per-thread scratch buffer: a fresh allocation per tensor costs a page fault per 4 KiB.
        scratch = getattr(self._local, "scratch", None)
        if scratch is None or scratch.numel() < new.numel():
            scratch = self._local.scratch = torch.empty(new.numel(), dtype=torch.uint8)
        return torch.bitwise_xor(new, old, out=scratch[: new.numel()])

    def _advance(self, tensors: list[tuple[str, torch.Tensor, torch.Tensor]], records: list[dict]) -> None:
        snapshot = {}
        for (name, new, original), record in zip(tensors, records, strict=True):
            old = self._snapshot.get(name)
            if record["encoding"] == "xor" and old is not None:
                old[0].copy_(new)  # reuse the snapshot's memory
                data = old[0]
            elif record["encoding"] == "same" and old is not None:
                data = old[0]
            else:  # `new` may view the trainer's live tensor (CPU); a GPU tensor's `.cpu()` is already a copy
                data = new.clone() if _shares_memory(new, original) else new
            snapshot[name] = (data, record["dtype"], tuple(record["shape"]), record["checksum"])
        self._snapshot = snapshot

    def _write_blob(self, frames: list[bytes], version: int) -> Path:
        assert self._directory is not None
        self._directory.mkdir(parents=True, exist_ok=True)
        final = self._directory / f"delta_v{version:06d}.bin"
        tmp = self._directory / f".tmp-{final.name}"
        with open(tmp, "wb") as f:
            f.writelines(frames)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)  # atomic: a reader sees the whole blob or no file
        return final

    def _prune(self, version: int) -> None:
        if self._directory is not None:
            for path in self._directory.glob("delta_v*.bin"):
                if path.name != f"delta_v{version:06d}.bin":
                    path.unlink(missing_ok=True)

    def close(self) -> None:
        """Drop the snapshot."""
        self.reset()


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _parallel_map(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """`[fn(x) for x in items]` on `workers` threads (the first exception propagates)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slime-sync-delta") as pool:
        return list(pool.map(fn, items))


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device == b.device and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class DeltaReceiver(VersionedReceiver):
    """Engine side of the delta transport; keeps its own CPU snapshot of the last applied bytes.

    Args:
        load_weights: the engine's loader; gets only the tensors that changed (fresh tensors on `device`).
        root: if given, blob files must lie inside it.
        device: where reconstructed tensors are placed before `load_weights`.
        verify_checksums: also re-hash unchanged snapshot tensors (checksums of changed ones are always checked).
        trusted_peers: see `VersionedReceiver`.
        workers: threads decoding tensors in parallel (default: the number of cores, at most 8).
    """

    transport = TRANSPORT

    def __init__(
        self,
        load_weights: LoadWeights,
        *,
        root: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        verify_checksums: bool = False,
        trusted_peers: Collection[str] = (),
        workers: int | None = None,
    ) -> None:
        super().__init__(load_weights, trusted_peers=trusted_peers)
        self._workers = workers or _default_workers()
        self._local = threading.local()
        self._root = None if root is None else Path(root).resolve()
        self._device = torch.device(device)
        self._deep_verify = verify_checksums
        self._snapshot: dict[str, tuple[torch.Tensor, str]] = {}  # name -> (bytes, checksum)
        self._next: dict[str, tuple[torch.Tensor, str]] = {}

    def _blob(self, payload: Mapping[str, Any]) -> bytes:
        if isinstance(payload.get("data"), str):
            blob = base64.b64decode(payload["data"].encode("ascii"), validate=True)
        elif isinstance(payload.get("file"), str):
            path = Path(payload["file"]).resolve()
            if self._root is not None and not path.is_relative_to(self._root):
                raise WeightSyncError(f"refusing to read a delta from {path}: it is outside {self._root}.")
            blob = path.read_bytes()
        else:
            raise WeightSyncError("delta payload needs `data` (base64) or `file`.")
        if len(blob) != payload.get("data_bytes") or hashlib.sha1(
            blob, usedforsecurity=False
        ).hexdigest() != payload.get("data_checksum"):
            raise WeightSyncError(f"delta blob is truncated or corrupt ({len(blob)} bytes read).")
        return blob

    def _stage(self, header: PayloadHeader, payload: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
        base = payload.get("base_version")
        if base is not None and base != self._version:
            raise WeightSyncError(
                f"delta for version {header.version} is against version {base}, but this receiver holds "
                f"{self._version}; the sender must publish in full (DeltaSender.reset())."
            )
        records = payload.get("tensors")
        if not isinstance(records, list) or len(records) != payload.get("num_tensors"):
            raise WeightSyncError("delta payload needs a `tensors` list of `num_tensors` records (truncated?).")
        try:
            blob = self._blob(payload)
        except (OSError, ValueError) as exc:
            raise WeightSyncError(f"cannot read the delta blob: {exc}") from exc
        self._next, staged = {}, []
        decoded = _parallel_map(lambda r: self._decode(r, blob, full_only=base is None), records, self._workers)
        for record, (name, shape, dtype, data, checksum) in zip(records, decoded, strict=True):
            if name in self._next:
                raise WeightSyncError(f"tensor {name!r} appears twice in a delta.")
            self._next[name] = (data, checksum)
            if record["encoding"] != "same":
                staged.append((name, data.view(dtype).view(shape).to(self._device)))
        return staged

    def _decode(
        self, record: Any, blob: bytes, *, full_only: bool
    ) -> tuple[str, tuple[int, ...], torch.dtype, torch.Tensor, str]:
        try:
            name, encoding, checksum = record["name"], record["encoding"], record["checksum"]
            shape, dtype = tuple(int(d) for d in record["shape"]), parse_dtype(record["dtype"])
            offset, length, nbytes = int(record["offset"]), int(record["length"]), int(record["nbytes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightSyncError(f"garbled delta record {record!r:.200}") from exc
        if encoding not in ENCODINGS or (full_only and encoding != "full") or not isinstance(name, str):
            raise WeightSyncError(f"delta record {name!r}: encoding {encoding!r} is not allowed here.")
        if min(shape, default=0) < 0 or nbytes != math.prod(shape) * element_size(record["dtype"]):
            raise WeightSyncError(f"delta record {name!r}: {nbytes} bytes do not match {shape} {dtype}.")
        if offset < 0 or length < 0 or offset + length > len(blob):
            raise WeightSyncError(f"delta record {name!r} points outside the blob.")
        old = self._snapshot.get(name)
        if encoding != "full" and (old is None or old[0].numel() != nbytes):
            raise WeightSyncError(f"delta record {name!r} needs a base this receiver does not have.")
        if encoding == "same":
            if old[1] != checksum or (self._deep_verify and tensor_checksum(old[0]) != checksum):
                raise WeightSyncError(f"tensor {name!r}: the receiver's base differs from the sender's.")
            return name, shape, dtype, old[0], checksum
        data = self._decompress(name, memoryview(blob)[offset : offset + length], nbytes)
        if encoding == "xor":
            data = torch.bitwise_xor(data, old[0], out=data)  # in place: `data` is our own decompressed copy
        if tensor_checksum(data) != checksum:
            raise WeightSyncError(f"tensor {name!r}: reconstructed bytes fail their checksum.")
        return name, shape, dtype, data, checksum

    def _decompress(self, name: str, frame: memoryview, nbytes: int) -> torch.Tensor:
        # Straight into a new tensor: no intermediate `bytes` object and no second copy.
        out = torch.empty(nbytes, dtype=torch.uint8)
        target, filled = writable_buffer(out), 0
        try:
            if not hasattr(self._local, "decompressor"):  # zstd contexts must not be shared between threads
                self._local.decompressor = zstandard.ZstdDecompressor()
            with self._local.decompressor.stream_reader(frame) as reader:
                while filled < nbytes and (n := reader.readinto(target[filled:])):
                    filled += n
                trailing = reader.read(1)
        except zstandard.ZstdError as exc:
            raise WeightSyncError(f"tensor {name!r}: corrupt zstd frame ({exc}).") from exc
        if filled != nbytes or trailing:
            raise WeightSyncError(f"tensor {name!r}: frame does not decompress to exactly {nbytes} bytes.")
        return out

    def _loaded(self, header: PayloadHeader, payload: Mapping[str, Any]) -> None:
        self._snapshot, self._next = self._next, {}
