"""slime.megatron.forward.select_rows: index_select's values and gradient, with a copying backward."""

from __future__ import annotations

import torch

from slime.megatron.forward import select_rows


def test_values_and_gradient_equal_index_select() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([7, 0, 3, 11, 4])  # no repeats, any order
    weight = torch.randn(5, 5, generator=g, dtype=torch.float64)
    ours = select_rows(x, index)
    (ours * weight).sum().backward()
    ours_grad, x.grad = x.grad, None
    theirs = x.index_select(0, index)
    (theirs * weight).sum().backward()
    assert torch.equal(ours, theirs) and torch.equal(ours_grad, x.grad)
    assert ours_grad[[1, 2, 5, 6, 8, 9, 10]].eq(0).all()  # rows not selected get a zero gradient
