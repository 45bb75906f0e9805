"""Host values (Python lists) to device tensors without making the host wait for the device.

`torch.tensor(values, device="cuda")` copies from pageable memory and then synchronizes the stream: the host waits
until the GPU has drained everything queued before it. A train step built its packed micro-batches and each
micro-batch's loss denominators that way: 426 host-device synchronizations per step on an H100
(`ci/gpu/megatron/device.sh host`), 16 of them between a micro-batch's forward and its backward. Here the values
go through pinned memory with a non-blocking copy; torch's pinned-memory cache keeps the host buffer alive until
the copy has run. On the CPU it is `torch.tensor`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def to_device(values: Sequence, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`torch.tensor(values, dtype=dtype)` on `device`, queued without a host-device synchronization."""
    host = torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def split_to_device(
    per_sample: Sequence[Sequence[float]], dtype: torch.dtype, device: torch.device
) -> list[torch.Tensor]:
    """One device tensor per inner sequence (views of one copy: one transfer for all of them)."""
    flat = to_device([x for values in per_sample for x in values], dtype, device)
    return list(flat.split([len(values) for values in per_sample]))
