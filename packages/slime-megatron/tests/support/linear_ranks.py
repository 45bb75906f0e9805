"""A rank process for test_wgrad_fusion.py's tensor-parallel check: `python linear_ranks.py RANK INIT_FILE OUT_DIR`
(a fresh interpreter: a forked test worker would inherit its process group, if it has one)."""

from __future__ import annotations


def column_parallel_rank(rank: int, init_file: str, out_dir: str) -> None:
    """One rank of a two-rank column-parallel `_FusedWgradLinear` (test_wgrad_fusion.py); saves its input gradient
    and accumulated weight gradient to `out_dir/rank{rank}.pt`."""
    import torch
    import torch.distributed as dist

    from slime.megatron.wgrad_fusion import _FusedWgradLinear

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        g = torch.Generator().manual_seed(4)  # the same full tensors on both ranks
        x = torch.randn(5, 1, 6, generator=g, dtype=torch.float64)
        full_weight = torch.randn(8, 6, generator=g, dtype=torch.float64)
        upstream = torch.randn(5, 1, 8, generator=g, dtype=torch.float64)
        weight = full_weight[rank * 4 : (rank + 1) * 4].clone().requires_grad_()  # this rank's output columns
        weight.main_grad = torch.zeros_like(weight)
        x_local = x.clone().requires_grad_()
        out = _FusedWgradLinear.apply(x_local, weight, None, True, dist.group.WORLD)
        out.backward(upstream[..., rank * 4 : (rank + 1) * 4])
        torch.save((x_local.grad, weight.main_grad), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    import sys

    column_parallel_rank(int(sys.argv[1]), sys.argv[2], sys.argv[3])
