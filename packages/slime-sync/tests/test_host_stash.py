"""`HostStash`: storages freed on the device and restored bit-exactly, views kept, host buffers reused."""

from __future__ import annotations

import pytest
import torch

from slime.sync.host_stash import HostStash, distinct_storages, offload_figures, onload_figures


def test_stash_frees_restores_and_reuses_buffers() -> None:
    weight = torch.randn(64, 32)
    view = weight[3:7]  # a view into the same storage
    moment = torch.randn(100, dtype=torch.float64)
    grad = torch.randn(64, 32)
    before = (weight.clone(), moment.clone())
    keep = distinct_storages([weight, view, moment, None, torch.empty(0)])
    assert len(keep) == 2  # the view shares the weight's storage; empty and None are skipped
    stash = HostStash()
    assert stash.stash(keep, distinct_storages([grad])) == weight.nbytes + moment.nbytes
    assert stash.stashed and weight.untyped_storage().nbytes() == 0 and grad.untyped_storage().nbytes() == 0
    buffers = list(stash._buffers)
    with pytest.raises(RuntimeError, match="twice"):
        stash.stash(keep)
    assert stash.restore() == weight.nbytes + moment.nbytes
    assert torch.equal(weight, before[0]) and torch.equal(moment, before[1]) and torch.equal(view, before[0][3:7])
    assert torch.count_nonzero(grad) == 0  # zero-only storages come back zeroed, not copied
    weight.add_(1.0)  # a changed weight is what the next stash must save
    stash.stash(keep)
    assert all(a is b for a, b in zip(stash._buffers, buffers, strict=True))  # same host buffers, no new allocation
    stash.restore()
    assert torch.equal(weight, before[0] + 1.0) and not stash.stashed


def test_distinct_storages_shares_what_it_has_seen() -> None:
    a, b = torch.ones(4), torch.ones(4)
    seen: set[int] = set()
    assert len(distinct_storages([a], seen)) == 1
    assert distinct_storages([a, a[1:]], seen) == [] and len(distinct_storages([b], seen)) == 1


def test_a_resized_storage_gets_a_new_buffer() -> None:
    t = torch.ones(8)
    stash = HostStash()
    stash.stash(distinct_storages([t]))
    stash.restore()
    u = torch.ones(16)
    stash.stash(distinct_storages([u]))
    assert stash.host_bytes == u.nbytes
    stash.restore()
    assert torch.equal(u, torch.ones(16))


def test_figures_say_where_the_switch_time_went() -> None:
    weights, moments = torch.randn(1000), torch.randn(3000)
    main, late = HostStash(), HostStash()
    late.stash(distinct_storages([moments]))
    main.stash(distinct_storages([weights]))
    figures = offload_figures(late, main)
    assert figures["perf/offload_behind_bytes"] == 0  # nothing was copied early on the CPU
    parts = [figures[f"perf/offload_{k}_time"] for k in ("wait_behind", "copy", "free")]
    assert all(t >= 0 for t in parts) and sum(parts) > 0
    main.restore()
    late.restore_behind()
    figures = onload_figures(main, late)
    assert set(figures) == {"perf/onload_alloc_time", "perf/onload_copy_time", "perf/onload_queue_behind_time",
                            "perf/onload_behind_bytes"}  # fmt: skip
    assert figures["perf/onload_behind_bytes"] == 0 and figures["perf/onload_alloc_time"] > 0
    assert main.restore_timings["copy"] >= 0 and late.restore_timings["alloc"] >= 0


def test_restore_behind_on_the_cpu_is_restore_and_waits_before_the_step() -> None:
    moment = torch.randn(50)
    before = moment.clone()
    stash = HostStash()
    stash.stash(distinct_storages([moment]))
    assert stash.restore_behind() == moment.nbytes and torch.equal(moment, before)
    assert not stash.in_flight and stash.in_flight_bytes == 0  # the CPU restores at once
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    waits = []
    stash.wait = lambda: waits.append(1)  # the hook looks `wait` up when the step runs
    stash.wait_before_step(optimizer)
    param.grad = torch.ones(3)
    optimizer.step()
    assert waits == [1] and torch.allclose(param, torch.full((3,), 0.9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (the side stream is CUDA's)")
def test_restore_behind_overlaps_and_is_exact_on_cuda() -> None:
    moments = [torch.randn(1 << 24, device="cuda") for _ in range(4)]  # 256 MiB
    grad = torch.randn(1 << 20, device="cuda")
    before = [m.clone() for m in moments]
    stash = HostStash()
    stash.stash(distinct_storages(moments), distinct_storages([grad]))
    assert all(m.untyped_storage().nbytes() == 0 for m in moments)
    assert stash.restore_behind() == sum(m.nbytes for m in moments) == stash.in_flight_bytes and stash.in_flight
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(8):
        x = x @ x / 64  # the current stream computes while the side stream copies
    stash.wait()
    assert not stash.in_flight and stash.in_flight_bytes == 0
    assert all(torch.equal(m, b) for m, b in zip(moments, before, strict=True)) and torch.count_nonzero(grad) == 0
    for m in moments:
        m.add_(1.0)
    stash.stash(distinct_storages(moments))  # the next stash saves what the current stream wrote after the wait
    stash.restore()
    assert all(torch.equal(m, b + 1.0) for m, b in zip(moments, before, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (the side stream is CUDA's)")
def test_stash_behind_is_finished_by_stash_and_dropped_by_a_step_on_cuda() -> None:
    param = torch.nn.Parameter(torch.randn(1 << 20, device="cuda"))
    optimizer = torch.optim.SGD([param], lr=0.5)
    stash = HostStash()
    stash.wait_before_step(optimizer)
    keep = distinct_storages([param])
    stash.stash(keep)
    stash.restore()  # a colocated cycle: the host buffer exists now
    before = param.detach().clone()
    stash.stash_behind(distinct_storages([param]))  # a new storage object for the same bytes: still recognised
    assert stash.stash(distinct_storages([param])) == param.nbytes and param.untyped_storage().nbytes() == 0
    stash.restore()
    assert torch.equal(param, before)
    with pytest.raises(ValueError, match="0-dim optimizer step counters"):
        stash.stash_behind(distinct_storages([param, torch.zeros(())]))  # a CPU step counter among CUDA state
    stash.stash_behind(distinct_storages([param]))
    param.grad = torch.ones_like(param)
    optimizer.step()  # changes the state: its pre-hook drops the early copy, so the stash copies again
    stash.stash(distinct_storages([param]))
    stash.restore()
    assert torch.equal(param, before - 0.5)


def test_stash_behind_is_a_no_op_on_the_cpu() -> None:
    t = torch.randn(10)
    stash = HostStash()
    stash.stash_behind(distinct_storages([t]))
    assert stash._behind is None
    stash.stash(distinct_storages([t]))
    stash.restore()


def _segments_holding(tensors: list[torch.Tensor]) -> set[int]:
    """The caching allocator's segments (by base address) that hold `tensors`' storages."""
    ptrs = {t.untyped_storage().data_ptr() for t in tensors}
    return {
        seg["address"]
        for seg in torch.cuda.memory_snapshot()
        for block in seg["blocks"]
        if block["state"] == "active_allocated" and block["address"] in ptrs
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (the reservation is CUDA's)")
@pytest.mark.parametrize("behind", [False, True])
def test_restore_carves_one_segment_and_the_offload_returns_it_whole_on_cuda(behind: bool) -> None:
    # odd sizes (not multiples of 512 or 2 MiB), small ones (the small pool's), and a grad buffer
    state = [torch.randn((3 << 20) + 7 * i + 1, device="cuda") for i in range(6)]
    small = [torch.randn(1000, device="cuda") for _ in range(3)]
    grad = torch.randn(5 << 20, device="cuda")
    before = [t.clone() for t in state + small]
    torch.cuda.synchronize()
    stash = HostStash()
    stash.stash(distinct_storages(state + small), distinct_storages([grad]))
    reserved_offloaded = torch.cuda.memory_reserved()
    stash.restore_behind() if behind else stash.restore()
    stash.wait()
    assert len(_segments_holding([*state, grad])) == 1  # one cudaMalloc for every large storage
    assert all(torch.equal(t, b) for t, b in zip(state + small, before, strict=True)) and not grad.count_nonzero()
    keep_alive = torch.randn(3 << 19, device="cuda")  # 1.5 MiB, allocated while the state is on the device
    torch.cuda.synchronize()
    stash.stash(distinct_storages(state + small), distinct_storages([grad]))
    # the reserved segment came back whole: the 1.5 MiB tensor took no piece of it
    assert torch.cuda.memory_reserved() <= reserved_offloaded + (20 << 20)
    assert keep_alive.isfinite().all()
