"""slime.sync: weight transport from trainers to engines: bucket planning, colocated / broadcast / disk / delta.

Names resolve lazily (PEP 562), so `import slime.sync.shared_memory` needs only torch (no safetensors/zstandard).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {  # module -> its public names
    "block_fp8": ("dequantize_block_fp8", "quantize_block_fp8"),
    "broadcast": ("BroadcastReceiver", "BroadcastSender"),
    "buckets": ("DEFAULT_BUCKET_BYTES", "BucketEntry", "BucketManifest", "TensorSpec", "flatten_bucket",
                "plan_buckets", "unflatten_bucket"),
    "delta": ("DeltaReceiver", "DeltaSender"),
    "disk": ("DiskReceiver", "DiskSender", "latest_disk_payload"),
    "fp8_rollout": ("Fp8QuantPlan", "quantize_for_fp8_engine"),
    "handshake": ("FORMAT", "LoadWeights", "PayloadHeader", "VersionedReceiver"),
    "host_stash": ("HostStash", "distinct_storages"),
    "peers": ("is_loopback_peer",),
    "shared_memory": ("SharedMemoryReceiver", "SharedMemorySender"),
    "tensor_bytes": ("tensor_checksum",),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'slime.sync' has no attribute {name!r}")
    globals()[name] = value = getattr(importlib.import_module(f"slime.sync.{_MODULE_OF[name]}"), name)
    return value
