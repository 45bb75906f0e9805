"""slime.megatron.response_rows.select_rows: index_select's values and gradient, with a copying backward, also into a
CUDA graph's gradient buffer (`cuda_graphs.GradRows`, plain tensor code: checked here on the CPU)."""

from __future__ import annotations

import torch

from slime.megatron.cuda_graphs import GradRows
from slime.megatron.response_rows import select_rows


class _Probe(torch.autograd.Function):
    """Identity that records the gradient tensor it receives (as `_Replay.backward` in cuda_graphs receives it)."""

    seen: list[torch.Tensor] = []

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        _Probe.seen.append(grad)
        return grad.clone()


def _grad_through(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, sink=None) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (select_rows(_Probe.apply(x), index, sink) * weight).sum().backward()
    return _Probe.seen[-1]


def test_values_and_gradient_equal_index_select() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([7, 0, 3, 11, 4])  # no repeats, any order
    weight = torch.randn(5, 5, generator=g, dtype=torch.float64)
    ours = select_rows(x, index)
    theirs = x[0].index_select(0, index)
    (theirs * weight).sum().backward()
    assert torch.equal(ours, theirs) and torch.equal(_grad_through(x, index, weight), x.grad)
    assert x.grad[0, [1, 2, 5, 6, 8, 9, 10]].eq(0).all()  # rows not selected get a zero gradient


def test_grad_rows_buffer_holds_exactly_the_latest_rows() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 12, 5, generator=g, dtype=torch.float64)
    sink = GradRows(torch.full((1, 12, 5), float("nan"), dtype=torch.float64))  # garbage until zeroed
    for index in (torch.tensor([7, 0, 3]), torch.tensor([1, 2, 11, 4]), torch.tensor([5])):
        weight = torch.randn(index.numel(), 5, generator=g, dtype=torch.float64)
        got = _grad_through(x, index, weight, sink)
        assert got.data_ptr() == sink.buffer.data_ptr()  # written in place: the replay copies nothing
        assert torch.equal(got, _grad_through(x, index, weight))  # rows of earlier writes are zero again
    sink.buffer.fill_(3.0)
    sink.overwritten()  # someone filled it: the next write clears everything
    weight = torch.randn(2, 5, generator=g, dtype=torch.float64)
    assert torch.equal(
        _grad_through(x, torch.tensor([0, 9]), weight, sink), _grad_through(x, torch.tensor([0, 9]), weight)
    )
