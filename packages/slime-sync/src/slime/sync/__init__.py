"""slime.sync: weight transport from trainers to engines: bucket planning, colocated / broadcast / disk / delta."""

from slime.sync.buckets import (
    DEFAULT_BUCKET_BYTES,
    BucketEntry,
    BucketManifest,
    TensorSpec,
    flatten_bucket,
    plan_buckets,
    unflatten_bucket,
)
from slime.sync.disk import DiskReceiver, DiskSender, latest_disk_payload
from slime.sync.handshake import FORMAT, LoadWeights, PayloadHeader, VersionedReceiver
from slime.sync.peers import is_loopback_peer
from slime.sync.shared_memory import SharedMemoryReceiver, SharedMemorySender
from slime.sync.tensor_bytes import tensor_checksum

__all__ = [
    "DEFAULT_BUCKET_BYTES", "FORMAT", "BucketEntry", "BucketManifest", "DiskReceiver", "DiskSender", "LoadWeights",
    "PayloadHeader", "SharedMemoryReceiver", "SharedMemorySender", "TensorSpec", "VersionedReceiver",
    "flatten_bucket", "is_loopback_peer", "latest_disk_payload", "plan_buckets", "tensor_checksum",
    "unflatten_bucket",
]  # fmt: skip
