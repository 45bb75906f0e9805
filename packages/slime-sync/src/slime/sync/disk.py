"""Disk transport: a full safetensors checkpoint per version on shared storage, published atomically.

The sender writes `<dir>/.tmp-weight_v<NNNNNN>-<random>/` (one `model-XXXXX-of-YYYYY.safetensors` per bucket,
an HF `model.safetensors.index.json` and our `manifest.json`), fsyncs it and renames it to
`<dir>/weight_v<NNNNNN>/` in one step, so a reader sees a whole version or none; a sender killed midway
leaves only a hidden temporary folder. The payload names that folder. The receiver reads it into fresh
tensors, checks names, shapes and dtypes against the manifest, and only then calls `load_weights`. Works
for engines that cannot join a process group (other clusters, external servers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slime.sync.buckets import DEFAULT_BUCKET_BYTES, TensorSpec, plan_buckets
from slime.sync.dtypes import dtype_name
from slime.sync.handshake import (
    FORMAT,
    LoadWeights,
    PayloadHeader,
    VersionedReceiver,
    check_newer,
    checksums_of,
    collect_named_tensors,
    publish_stats,
)
from slime.types import WeightSyncError

TRANSPORT = "disk"
MANIFEST = "manifest.json"
_VERSION_DIR = re.compile(r"weight_v(\d+)")


def version_dir(directory: str | os.PathLike[str], version: int) -> Path:
    """Where version `version` is published under `directory`."""
    return Path(directory) / f"weight_v{version:06d}"


def latest_disk_payload(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The payload of the newest complete version under `directory` (None if there is none).

    For an engine that (re)starts or polls shared storage instead of being told by the trainer.
    """
    versions = [
        int(m.group(1))
        for p in Path(directory).iterdir()
        if (m := _VERSION_DIR.fullmatch(p.name)) and (p / MANIFEST).is_file()
    ]
    if not versions:
        return None
    version = max(versions)
    return {**PayloadHeader(TRANSPORT, version).to_dict(), "path": str(version_dir(directory, version))}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskSender:
    """Trainer side of the disk transport.

    Args:
        deliver: tells every engine to load the published folder; returns once they did.
        directory: shared storage visible to the engines under the same path.
        bucket_bytes: size of each safetensors shard.
        keep_versions: published versions kept on disk (older ones are deleted after a successful publish).
        checksums: write per-tensor checksums into the manifest and payload.
    """

    def __init__(
        self,
        deliver: Callable[[dict[str, Any]], Any],
        directory: str | os.PathLike[str],
        *,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        keep_versions: int = 1,
        checksums: bool = False,
    ) -> None:
        self._deliver = deliver
        self._directory = Path(directory)
        self._bucket_bytes = bucket_bytes
        self._keep = max(1, keep_versions)
        self._checksums = checksums
        self._last: int | None = None

    def write(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> Path:
        """Write and atomically publish version `version`; return its folder. Does not deliver."""
        check_newer(self._last, version)
        final = version_dir(self._directory, version)
        if final.exists():
            raise WeightSyncError(f"{final} already exists; versions are published once.")
        tensors = {n: t.to("cpu").contiguous() for n, t in collect_named_tensors(named_tensors)}
        manifests = plan_buckets([TensorSpec.of(n, t) for n, t in tensors.items()], self._bucket_bytes)
        self._directory.mkdir(parents=True, exist_ok=True)
        tmp = self._directory / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            files: dict[str, str] = {}
            for i, manifest in enumerate(manifests):
                file = f"model-{i + 1:05d}-of-{len(manifests):05d}.safetensors"
                save_file({n: tensors[n] for n in manifest.names}, str(tmp / file), metadata={"format": "pt"})
                _fsync(tmp / file)
                files.update(dict.fromkeys(manifest.names, file))
            self._write_json(tmp, tensors, files, version)
            _fsync(tmp)
            os.rename(tmp, final)  # atomic: readers see all of `final` or nothing
            _fsync(self._directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._last = version
        return final

    def _write_json(
        self, tmp: Path, tensors: Mapping[str, torch.Tensor], files: Mapping[str, str], version: int
    ) -> None:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total, "weight_version": version}, "weight_map": dict(files)}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": version,
            "tensors": {
                n: {"shape": list(t.shape), "dtype": dtype_name(t.dtype), "file": files[n]} for n, t in tensors.items()
            },
        }
        if self._checksums:
            manifest["checksums"] = checksums_of(tensors.items())
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        _fsync(tmp / MANIFEST)

    def publish(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> dict[str, float]:
        """Write, publish, deliver the folder's path, then prune old versions; returns bytes, seconds, GB/s."""
        started = time.perf_counter()
        folder = self.write(named_tensors, version)
        nbytes = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        written = time.perf_counter() - started
        payload = {**PayloadHeader(TRANSPORT, version).to_dict(), "path": str(folder)}
        if self._checksums:
            payload["checksums"] = json.loads((folder / MANIFEST).read_text())["checksums"]
        self._deliver(payload)
        self._prune()
        return publish_stats(nbytes, started, write_seconds=written)

    def _prune(self) -> None:
        published = sorted(
            (int(m.group(1)), p) for p in self._directory.iterdir() if (m := _VERSION_DIR.fullmatch(p.name))
        )
        for _, path in published[: -self._keep]:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Nothing to release; published folders stay for engines that start later (`latest_disk_payload`)."""


class DiskReceiver(VersionedReceiver):
    """Engine side of the disk transport.

    Args:
        load_weights: the engine's loader (gets freshly read tensors on `device`).
        root: if given, payload paths must lie inside it (a payload cannot make the engine read other files).
        device: where read tensors are placed.
        verify_checksums / trusted_peers: see `VersionedReceiver`.
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
    ) -> None:
        super().__init__(load_weights, verify_checksums=verify_checksums, trusted_peers=trusted_peers)
        self._root = None if root is None else Path(root).resolve()
        self._device = str(torch.device(device))

    def _folder(self, payload: Mapping[str, Any]) -> Path:
        path = payload.get("path")
        if not isinstance(path, str):
            raise WeightSyncError("disk payload needs a string `path`.")
        folder = Path(path).resolve()
        if self._root is not None and not folder.is_relative_to(self._root):
            raise WeightSyncError(f"refusing to read weights from {folder}: it is outside {self._root}.")
        return folder

    def _stage(self, header: PayloadHeader, payload: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
        folder = self._folder(payload)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            specs = manifest["tensors"]
            if manifest["version"] != header.version or not isinstance(specs, dict):
                raise WeightSyncError(
                    f"{folder} holds version {manifest['version']}, the payload says {header.version}."
                )
            loaded: dict[str, torch.Tensor] = {}
            for file in sorted({s["file"] for s in specs.values()}):
                if Path(file).name != file:
                    raise WeightSyncError(f"manifest names file {file!r} outside its folder.")
                loaded.update(load_file(str(folder / file), device=self._device))
        except WeightSyncError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
            raise WeightSyncError(f"cannot read weights version {header.version} from {folder}: {exc}") from exc
        staged = []
        for name, spec in specs.items():
            tensor = loaded.pop(name, None)
            if (
                tensor is None
                or list(tensor.shape) != spec.get("shape")
                or dtype_name(tensor.dtype) != spec.get("dtype")
            ):
                raise WeightSyncError(f"{folder}: tensor {name!r} is missing or differs from the manifest.")
            staged.append((name, tensor))
        if loaded:
            raise WeightSyncError(f"{folder}: tensors {sorted(loaded)[:3]} are not in the manifest.")
        return staged
