"""Memory handles: share one byte buffer with another process on this machine as a JSON-ready dict.

CPU buffers live in POSIX shared memory managed by torch's `torch_shm_manager` (torch.multiprocessing's
`file_system` strategy), so unrelated processes can open them by name and the segment is freed when the
last process lets go, even if the sender dies. CUDA buffers are shared through torch.multiprocessing's CUDA
IPC reduction (`reduce_tensor` / `rebuild_cuda_tensor`), including its producer-side reference counting and
event synchronisation. Nothing is pickled: the reduction's arguments are encoded field by field into JSON and
only a fixed set of types comes back out, so a forged handle can at worst name the wrong memory, never run
code. Callers still accept handles only from loopback (see `slime.sync.peers`). Opening maps the memory; no
byte is copied.
"""

from __future__ import annotations

import base64
import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch.multiprocessing.reductions import rebuild_cuda_tensor, reduce_tensor

from slime.sync.dtypes import dtype_name, parse_dtype
from slime.types import WeightSyncError

_CUDA_PARAMS = tuple(inspect.signature(rebuild_cuda_tensor).parameters)
# The only classes a CUDA IPC reduction names (the tensor class and its storage class).
_CLASSES: dict[str, type] = {
    "torch.Tensor": torch.Tensor,
    "torch.UntypedStorage": torch.UntypedStorage,
    "torch.storage.TypedStorage": torch.storage.TypedStorage,
}
_SHM_NAME = re.compile(rb"/torch_[0-9]+_[0-9]+_[0-9]+")


def alloc_shared_buffer(nbytes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A new `uint8` buffer of `nbytes` that `share_buffer` can hand out (shared memory on CPU)."""
    device = torch.device(device)
    if device.type != "cpu":
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    storage = torch.UntypedStorage._new_using_filename_cpu(nbytes)
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (nbytes,), (1,))


def share_buffer(buffer: torch.Tensor) -> dict[str, Any]:
    """A JSON-ready handle for `buffer` (from `alloc_shared_buffer`). Keep `buffer` alive until receivers are done."""
    if buffer.dtype != torch.uint8 or buffer.dim() != 1 or not buffer.is_contiguous():
        raise WeightSyncError("only flat, contiguous uint8 buffers can be shared.")
    if buffer.device.type == "cuda":
        return _share_cuda(buffer)
    if buffer.device.type != "cpu":
        raise WeightSyncError(f"cannot share a buffer on {buffer.device}; only CPU and CUDA are supported.")
    if buffer.numel() == 0:
        return {"kind": "empty"}
    storage = buffer.untyped_storage()
    if buffer.storage_offset() != 0 or storage.nbytes() != buffer.numel():
        raise WeightSyncError("a shared CPU buffer must own its whole storage; allocate it with alloc_shared_buffer.")
    manager, name, size = storage._share_filename_cpu_()
    return {"kind": "cpu_shm", "manager": _b64(manager), "name": _b64(name), "nbytes": int(size)}


def open_buffer(handle: Mapping[str, Any], nbytes: int) -> torch.Tensor:
    """Map the buffer behind `handle` (must hold exactly `nbytes` bytes) without copying it.

    Raises:
        WeightSyncError: the handle is garbled, names no live buffer, or has the wrong size.
    """
    try:
        kind = handle["kind"]
        if kind == "empty":
            buffer = torch.empty(0, dtype=torch.uint8)
        elif kind == "cpu_shm":
            buffer = _open_cpu(handle)
        elif kind == "cuda_ipc":
            buffer = _open_cuda(handle)
        else:
            raise WeightSyncError(f"unknown memory handle kind {kind!r}.")
    except WeightSyncError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightSyncError(f"cannot open a shared buffer ({type(exc).__name__}: {exc}).") from exc
    if buffer.numel() != nbytes:
        raise WeightSyncError(f"shared buffer holds {buffer.numel()} bytes; the manifest expects {nbytes}.")
    return buffer


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (AttributeError, ValueError) as exc:  # not a str, not ASCII, or not base64
        raise WeightSyncError(f"garbled base64 field in a memory handle: {text!r:.80}") from exc


def cpu_shm_location(handle: Mapping[str, Any]) -> tuple[bytes, bytes, int]:
    """The `(manager socket, segment name, bytes)` of a `cpu_shm` handle, checked to be torch's own naming.

    Raises:
        WeightSyncError: a field is missing or garbled, or the names are not ones torch's manager hands out.
    """
    try:
        manager, name, size = _unb64(handle["manager"]), _unb64(handle["name"]), handle["nbytes"]
    except (KeyError, TypeError) as exc:
        raise WeightSyncError(f"cpu_shm handle lacks a field ({type(exc).__name__}: {exc}).") from exc
    # Only names torch's own shared-memory manager hands out; never an arbitrary file.
    if not _SHM_NAME.fullmatch(name) or not manager.endswith(b"/manager.sock") or b"\0" in manager:
        raise WeightSyncError("shared-memory handle does not look like one torch created.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise WeightSyncError(f"shared-memory handle size {size!r} is not a byte count.")
    return manager, name, size


def _open_cpu(handle: Mapping[str, Any]) -> torch.Tensor:
    manager, name, size = cpu_shm_location(handle)
    storage = torch.UntypedStorage._new_shared_filename_cpu(manager, name, size)
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (size,), (1,))


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"bytes": _b64(value)}
    if isinstance(value, torch.dtype):
        return {"dtype": dtype_name(value)}
    if isinstance(value, tuple | list | torch.Size):
        return {"tuple": [_encode(v) for v in value]}
    for name, cls in _CLASSES.items():
        if value is cls:
            return {"class": name}
    raise WeightSyncError(f"unexpected {type(value).__name__} in a CUDA IPC reduction (torch version change?).")


def _decode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "bytes":
            return _unb64(inner)
        if key == "dtype":
            return parse_dtype(inner)
        if key == "tuple" and isinstance(inner, list):
            return tuple(_decode(v) for v in inner)
        if key == "class" and inner in _CLASSES:
            return _CLASSES[inner]
    raise WeightSyncError(f"garbled CUDA IPC handle field {value!r}.")


def _share_cuda(buffer: torch.Tensor) -> dict[str, Any]:
    rebuild, args = reduce_tensor(buffer)
    if rebuild is not rebuild_cuda_tensor or len(args) != len(_CUDA_PARAMS):
        raise WeightSyncError("torch's CUDA IPC reduction changed shape; slime.sync needs updating.")
    fields = {name: _encode(arg) for name, arg in zip(_CUDA_PARAMS, args, strict=True)}
    uuid = str(torch.cuda.get_device_properties(buffer.device).uuid)
    return {"kind": "cuda_ipc", "fields": fields, "device_uuid": uuid}


def _local_device_index(uuid: str, fallback: int) -> int:
    # The sender's device index means nothing if the receiver sees another CUDA_VISIBLE_DEVICES; match by UUID.
    for index in range(torch.cuda.device_count()):
        if str(torch.cuda.get_device_properties(index).uuid) == uuid:
            return index
    return fallback


def cuda_ipc_reduction(handle: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of torch's `rebuild_cuda_tensor` that a `cuda_ipc` handle encodes (a flat uint8
    buffer; `requires_grad` forced off). `storage_device` is the sender's device index; the handle's
    `device_uuid` names the device independently of `CUDA_VISIBLE_DEVICES`.

    Raises:
        WeightSyncError: the fields do not match this torch's reduction, or describe anything but a uint8 tensor.
    """
    fields = handle.get("fields")
    if not isinstance(fields, Mapping) or set(fields) != set(_CUDA_PARAMS):
        raise WeightSyncError("CUDA IPC handle fields do not match this torch version's reduction.")
    kwargs = {name: _decode(fields[name]) for name in _CUDA_PARAMS}
    if kwargs["tensor_cls"] is not torch.Tensor or kwargs["dtype"] is not torch.uint8:
        raise WeightSyncError("CUDA IPC handle must describe a plain uint8 tensor.")
    kwargs["requires_grad"] = False
    return kwargs


def cuda_ipc_class_name(cls: type) -> str:
    """The dotted name under which a class of a CUDA IPC reduction travels (`"torch.storage.TypedStorage"`)."""
    for name, known in _CLASSES.items():
        if known is cls:
            return name
    raise WeightSyncError(f"class {cls!r} is not one a CUDA IPC reduction may name.")


def _open_cuda(handle: Mapping[str, Any]) -> torch.Tensor:
    kwargs = cuda_ipc_reduction(handle)
    kwargs["storage_device"] = _local_device_index(str(handle.get("device_uuid", "")), kwargs["storage_device"])
    tensor = rebuild_cuda_tensor(**kwargs)
    if tensor.dim() != 1 or not tensor.is_contiguous():
        raise WeightSyncError("CUDA IPC handle must describe a flat contiguous buffer.")
    return tensor
