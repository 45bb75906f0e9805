"""Export of the live model as HF-named, full (TP/EP-gathered, PP-broadcast) tensors, in byte-bounded buckets.

mbridge produces one gathered tensor at a time; this groups them into buckets of at most `bucket_bytes` (a
single larger tensor forms its own bucket), which is the unit slime.sync transports. Every rank of the model
must iterate (the gathers are collectives); every rank receives the same tensors. Tensors are detached and keep
the training dtype and device. It does not send anything.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from slime.types import NamedTensor


def iter_buckets(named: Iterator[tuple[str, torch.Tensor]], bucket_bytes: int) -> Iterator[list[NamedTensor]]:
    """Group a stream of `(name, tensor)` into lists whose total bytes stay <= `bucket_bytes`."""
    bucket: list[NamedTensor] = []
    size = 0
    for name, tensor in named:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor.detach()))
        size += nbytes
    if bucket:
        yield bucket


def export_buckets(stack, bucket_bytes: int) -> Iterator[list[NamedTensor]]:
    """HF-named full tensors of `stack`'s model, bucket by bucket (collective over the model-parallel ranks)."""
    with torch.no_grad():
        yield from iter_buckets(stack.bridge.export_hf_weights(stack.modules), bucket_bytes)
