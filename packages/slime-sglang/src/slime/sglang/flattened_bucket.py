"""One slime.sync colocated bucket as SGLang's serialized `FlattenedTensorBucket` (its tensor-path byte format).

SGLang's `/update_weights_from_tensor` with `load_format="flattened_bucket"` takes, for each TP rank, the
base64 text of `MultiprocessingSerializer.serialize({"flattened_tensor": T, "metadata": [FlattenedTensorMetadata,
...]})`: a **pickle** (torch's ForkingPickler format) in which `T` is rebuilt from a memory handle by torch's
multiprocessing reductions, and which SGLang loads with its `SafeUnpickler` (an allowlist of torch and sglang
modules). The format is pickle because SGLang's is; slime.sync's own wire format stays JSON. This module
writes that pickle from a bucket's manifest and its slime.sync memory handle, without reading the memory and
without importing sglang (whose import patches transformers in the trainer): the classes are named by
module and name, and the tensor is the reduction torch itself would emit for the shared buffer:

- CUDA buffer: `rebuild_cuda_tensor(...)` with the handle's arguments and the device's UUID in
  `storage_device`, which is what SGLang's patched reduction sends and its patched rebuild expects.
- CPU shared memory: `rebuild_tensor(Tensor, rebuild_typed_storage(rebuild_storage_filename(...), uint8), ...)`,
  torch's `file_system` form. As torch's sender does, one reference to the segment is taken per copy sent;
  the engine's rebuild gives it back.

Handles name memory on this host: use it only for colocated engines on the same machine (loopback). Tensor
offsets are the manifest's (64-byte aligned; `FlattenedTensorBucket` only slices, so gaps are harmless). It
sends nothing and never unpickles.
"""

from __future__ import annotations

import base64
import io
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from slime.sync.buckets import BucketManifest
from slime.sync.dtypes import parse_dtype
from slime.sync.ipc import cpu_shm_location, cuda_ipc_class_name, cuda_ipc_reduction
from slime.types import ContractError, WeightSyncError

LOAD_FORMAT = "flattened_bucket"
"""SGLang's `load_format` for a serialized `{"flattened_tensor", "metadata"}` dict."""

_TENSOR_BUCKET = "sglang.srt.weight_sync.tensor_bucket"
_REDUCTIONS = "torch.multiprocessing.reductions"
_PROTOCOL = 4  # STACK_GLOBAL names a module without importing it here; SGLang reads any protocol


class _GlobalRef:
    """`module.name` in the pickle (one STACK_GLOBAL), written without importing `module` here."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle checks that a reduce function is callable
        raise TypeError(f"{self.module}.{self.name} is a reference for a pickle, not a function here.")


class _Call:
    """An object that pickles as `func(*args)`, evaluated by the unpickler (SGLang's process)."""

    __slots__ = ("args", "func")

    def __init__(self, func: _GlobalRef, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


def _save_global_ref(pickler: Any, ref: _GlobalRef) -> None:
    pickler.save(ref.module)
    pickler.save(ref.name)
    pickler.write(pickle.STACK_GLOBAL)
    pickler.memoize(ref)


class _Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can name unimported globals
    dispatch = {**pickle._Pickler.dispatch, _GlobalRef: _save_global_ref}


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _torch_ref(value: torch.dtype | str) -> _GlobalRef:
    """A torch dtype (`torch.bfloat16`) or a dotted torch class name (`"torch.storage.TypedStorage"`)."""
    dotted = str(value) if isinstance(value, torch.dtype) else value
    module, _, name = dotted.rpartition(".")
    return _GlobalRef(module, name)


def _size(dims: Sequence[int]) -> _Call:
    return _Call(_GlobalRef("torch", "Size"), (tuple(int(d) for d in dims),))


def _metadata(manifest: BucketManifest) -> list[_Call]:
    cls = _GlobalRef(_TENSOR_BUCKET, "FlattenedTensorMetadata")
    # FlattenedTensorMetadata(name, shape, dtype, start_idx, end_idx, numel): byte offsets into the uint8 buffer.
    return [
        _Call(cls, (e.name, _size(e.shape), _torch_ref(parse_dtype(e.dtype)), e.offset, e.offset + e.nbytes, e.nbytes))
        for e in manifest.entries
    ]


def _cuda_tensor(handle: Mapping[str, Any]) -> _Call:
    kwargs = cuda_ipc_reduction(handle)
    uuid = handle.get("device_uuid")
    if not isinstance(uuid, str) or not uuid:
        raise WeightSyncError("cuda_ipc handle lacks `device_uuid`; SGLang finds the device by its UUID.")
    kwargs.update(
        tensor_cls=_torch_ref(cuda_ipc_class_name(kwargs["tensor_cls"])),
        storage_cls=_torch_ref(cuda_ipc_class_name(kwargs["storage_cls"])),
        dtype=_torch_ref(kwargs["dtype"]),
        tensor_size=_size(kwargs["tensor_size"]),
        storage_device=uuid,  # SGLang's monkey_patch_torch_reductions maps a UUID to its local index
    )
    return _Call(_GlobalRef(_REDUCTIONS, "rebuild_cuda_tensor"), tuple(kwargs.values()))


def _cpu_tensor(handle: Mapping[str, Any]) -> _Call:
    manager, name, nbytes = cpu_shm_location(handle)
    # torch's file_system sender takes one reference per copy in flight; the receiver's rebuild drops it.
    storage = torch.UntypedStorage._new_shared_filename_cpu(manager, name, nbytes)
    storage._shared_incref()
    del storage  # the mapping goes; the reference taken above stays with the segment
    untyped = _Call(_GlobalRef(_REDUCTIONS, "rebuild_storage_filename"), (_torch_ref("torch.UntypedStorage"),
                    manager, name, nbytes))  # fmt: skip
    typed = _Call(_GlobalRef(_REDUCTIONS, "rebuild_typed_storage"), (untyped, _torch_ref(torch.uint8)))
    metadata = (0, _size((nbytes,)), (1,), False)  # (storage offset, size, stride, requires_grad)
    return _Call(_GlobalRef(_REDUCTIONS, "rebuild_tensor"), (_torch_ref("torch.Tensor"), typed, metadata))


def serialize_bucket(manifest: BucketManifest, handle: Mapping[str, Any], *, num_copies: int = 1) -> list[str]:
    """SGLang's `serialized_named_tensors` for one bucket: one base64 pickle per TP rank of the engine.

    Args:
        manifest: the bucket's manifest (names, shapes, dtypes, byte offsets).
        handle: its slime.sync memory handle (`cpu_shm`, `cuda_ipc` or `empty`) from `slime.sync.ipc`.
        num_copies: the engine's TP size; every TP rank rebuilds its own copy.

    Raises:
        ContractError: a CUDA handle for more than one TP rank (one CUDA IPC handle serves one consumer).
        WeightSyncError: the handle is garbled or of an unknown kind.
    """
    kind = handle.get("kind")
    if kind == "cuda_ipc" and num_copies != 1:
        raise ContractError(
            f"an SGLang engine with tp_size={num_copies} needs one CUDA IPC handle per TP rank, and a slime.sync "
            "colocated payload carries one per bucket; use --rollout-num-gpus-per-engine 1 for colocated "
            "engines, or the broadcast transport (--update-weight-transport nccl)."
        )
    if num_copies < 1:
        raise ContractError(f"num_copies={num_copies} must be >= 1 (the engine's tp_size).")
    out = []
    for _ in range(num_copies):
        if kind == "cuda_ipc":
            tensor = _cuda_tensor(handle)
        elif kind == "cpu_shm":
            tensor = _cpu_tensor(handle)
        elif kind == "empty":  # a bucket of empty tensors: a real, empty CPU tensor pickles without a handle
            tensor = _Call(_GlobalRef("torch", "empty"), (0,))
        else:
            raise WeightSyncError(f"memory handle kind {kind!r} is not one of cpu_shm, cuda_ipc, empty.")
        blob = _dumps({"flattened_tensor": tensor, "metadata": _metadata(manifest)})
        out.append(base64.b64encode(blob).decode("ascii"))
    return out
