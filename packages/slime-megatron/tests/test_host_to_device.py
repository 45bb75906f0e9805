"""slime.megatron.host_to_device: the same tensors as `torch.tensor`, and on a GPU no host-device synchronization."""

from __future__ import annotations

import warnings

import pytest
import torch

from slime.megatron.host_to_device import split_to_device, to_device


def test_values_dtypes_and_splits_match_torch_tensor() -> None:
    cpu = torch.device("cpu")
    got = to_device([[1, 2, 3]], torch.long, cpu)
    assert got.dtype == torch.long and torch.equal(got, torch.tensor([[1, 2, 3]]))
    parts = split_to_device([[0.5, 1.5], [], [2.0]], torch.float32, cpu)
    assert [p.tolist() for p in parts] == [[0.5, 1.5], [], [2.0]] and all(p.dtype == torch.float32 for p in parts)
    assert split_to_device([], torch.float32, cpu) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (pinned, non-blocking copies)")
def test_no_synchronization_on_cuda_and_the_values_arrive() -> None:
    device = torch.device("cuda")
    to_device([0.0] * 1000, torch.float32, device)  # the first pinned buffers are allocated once; steps reuse them
    torch.cuda.synchronize()
    x = torch.randn(4096, 4096, device=device)
    for _ in range(4):
        x = x @ x / 64  # keep the device busy, so that a synchronizing copy would have to wait
    try:
        with warnings.catch_warnings():  # torch warns that the mode is a prototype; the suite makes warnings errors
            warnings.simplefilter("ignore")
            torch.cuda.set_sync_debug_mode("error")
        got = to_device(list(range(1000)), torch.long, device)
        parts = split_to_device([[1.0] * 7, [2.0] * 3], torch.float32, device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.tolist() == list(range(1000)) and [p.tolist() for p in parts] == [[1.0] * 7, [2.0] * 3]
