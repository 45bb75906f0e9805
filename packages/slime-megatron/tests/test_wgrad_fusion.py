"""slime.megatron.wgrad_fusion: the fused linear's gradients against autograd's, Megatron's DDP protocol, and the
CUDA GEMM that accumulates bf16 products into fp32 (GPU only).

In the Megatron worlds (test_megatron_training.py) one training step with the fusion equals one without it.
"""

from __future__ import annotations

import pytest
import torch

from slime.megatron.wgrad_fusion import _FusedWgradLinear, accumulate_wgrad, gradient_placeholder


def _weight(out: int, inp: int, *, ddp: bool, gen: torch.Generator) -> torch.Tensor:
    weight = torch.randn(out, inp, generator=gen, dtype=torch.float64, requires_grad=True)
    weight.main_grad = torch.randn(out, inp, generator=gen, dtype=torch.float64)  # earlier micro-batches' sum
    if ddp:
        weight.grad_added_to_main_grad = False
    return weight


@pytest.mark.parametrize("with_bias", [False, True])
def test_gradients_equal_autograd_and_accumulate_into_main_grad(with_bias: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 5, generator=g, dtype=torch.float64, requires_grad=True)  # [s, b, in] as Megatron's
    weight = _weight(3, 5, ddp=False, gen=g)
    bias = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    upstream = torch.randn(6, 1, 3, generator=g, dtype=torch.float64)
    before = weight.main_grad.clone()

    out = _FusedWgradLinear.apply(x, weight, bias, False, None)
    out.backward(upstream)
    x_ref, w_ref = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    b_ref = None if bias is None else bias.detach().clone().requires_grad_()
    ref = torch.nn.functional.linear(x_ref, w_ref, b_ref)
    ref.backward(upstream)

    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weight.main_grad, before + w_ref.grad, rtol=1e-12, atol=1e-12)
    assert weight.grad is None  # outside DDP autograd gets no weight gradient at all
    if bias is not None:
        torch.testing.assert_close(bias.grad, b_ref.grad, rtol=1e-12, atol=1e-12)


def test_under_ddp_autograd_gets_a_placeholder_and_the_hook_is_told() -> None:
    g = torch.Generator().manual_seed(1)
    weight = _weight(4, 2, ddp=True, gen=g)
    seen: list[torch.Tensor] = []
    weight.register_hook(lambda grad: seen.append(grad))  # DDP's hook must still run (overlapped reduction)
    x = torch.randn(3, 1, 2, generator=g, dtype=torch.float64)
    _FusedWgradLinear.apply(x, weight, None, False, None).sum().backward()
    assert weight.grad_added_to_main_grad is True and len(seen) == 1 and seen[0].shape == weight.shape
    plain = torch.zeros(2, 2, requires_grad=True)
    assert gradient_placeholder(plain) is None and not hasattr(plain, "grad_added_to_main_grad")


def test_cpu_accumulation_promotes_half_inputs_to_main_grads_dtype() -> None:
    g = torch.Generator().manual_seed(2)
    grad_out = torch.randn(64, 8, generator=g).to(torch.bfloat16)
    inputs = torch.randn(64, 16, generator=g).to(torch.bfloat16)
    main_grad = torch.randn(8, 16, generator=g)
    expected = main_grad.double() + grad_out.double().t() @ inputs.double()
    accumulate_wgrad(main_grad, grad_out, inputs)
    assert main_grad.dtype == torch.float32
    torch.testing.assert_close(main_grad.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (ci/gpu/megatron/device.sh tests)")
def test_cuda_bf16_products_accumulate_in_place_into_fp32() -> None:
    g = torch.Generator(device="cuda").manual_seed(3)
    grad_out = torch.randn(4096, 1024, generator=g, device="cuda").to(torch.bfloat16)
    inputs = torch.randn(4096, 3072, generator=g, device="cuda").to(torch.bfloat16)
    main_grad = torch.randn(1024, 3072, generator=g, device="cuda")
    address = main_grad.data_ptr()
    expected = main_grad.double() + grad_out.double().t() @ inputs.double()
    accumulate_wgrad(main_grad, grad_out, inputs)
    assert main_grad.data_ptr() == address and main_grad.dtype == torch.float32
    # fp32 accumulation of exact bf16 products: far tighter than a bf16 gradient added afterwards (~4e-3 relative)
    err = (main_grad.double() - expected).abs().max() / expected.abs().max()
    assert err < 1e-5, float(err)


def test_column_parallel_input_gradient_is_all_reduced_over_tensor_parallelism(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "support" / "linear_ranks.py"
    ranks = [
        subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "init"), str(tmp_path)]) for r in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in ranks] == [0, 0]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 1, 6, generator=g, dtype=torch.float64, requires_grad=True)
    full_weight = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 1, 8, generator=g, dtype=torch.float64)
    torch.nn.functional.linear(x, full_weight).backward(upstream)
    for rank in (0, 1):
        grad_input, main_grad = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(grad_input, x.grad, rtol=1e-12, atol=1e-12)  # both ranks' shares summed
        torch.testing.assert_close(main_grad, full_weight.grad[rank * 4 : (rank + 1) * 4], rtol=1e-12, atol=1e-12)
