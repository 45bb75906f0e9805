"""Megatron-core config objects built from a resolved Megatron namespace (see `megatron_args`, `model_shape`).

- `parallel_sizes`: the TP/PP/CP/EP degrees for `_megatron_globals.initialize_model_parallel`;
- `params_dtype`: bf16 / fp16 / fp32 from `--bf16` / `--fp16`;
- `transformer_overrides`: `TransformerConfig` fields handed to mbridge on top of what it reads from HF;
- `ddp_config`, `optimizer_config`, `scheduler_kwargs`: the distributed data-parallel wrapper, the (distributed)
  optimizer and its LR/WD schedule.

The loss is normalised by slime.loss with explicit global denominators, so `calculate_per_token_loss` is always
on in the model config: Megatron then neither divides the loss by the micro-batch count nor averages gradients
over data-parallel ranks (it sums them), which is what pre-normalised losses need.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from slime.megatron._megatron_globals import ParallelSizes
from slime.megatron.layer_spec import transformer_engine_available
from slime.types import ConfigError

_NEVER_DECAY = 2**62
"""LR decay horizon when neither --lr-decay-iters nor --train-iters is given: the schedule then stays flat."""


def parallel_sizes(ns: argparse.Namespace) -> ParallelSizes:
    """Megatron's parallel degrees from the flags."""
    return ParallelSizes(
        tp=ns.tensor_model_parallel_size,
        pp=ns.pipeline_model_parallel_size,
        cp=ns.context_parallel_size,
        ep=ns.expert_model_parallel_size,
        etp=ns.expert_tensor_parallel_size,
        vpp=ns.virtual_pipeline_model_parallel_size,
    )


def params_dtype(ns: argparse.Namespace) -> torch.dtype:
    """The dtype model parameters are held in (the optimizer keeps fp32 main copies for bf16/fp16)."""
    if ns.fp16 and ns.bf16:
        raise ConfigError("--fp16 and --bf16 are both set; choose one.")
    return torch.bfloat16 if ns.bf16 else torch.float16 if ns.fp16 else torch.float32


def transformer_overrides(ns: argparse.Namespace, *, on_cpu: bool, fused_elementwise: bool = False) -> dict[str, Any]:
    """`TransformerConfig` fields from flags; the model shape itself comes from the HF config through mbridge.

    `fused_elementwise` asks for the compiled elementwise fusions on an accelerator even without TE: under CUDA
    graphs (`slime.megatron.cuda_graphs`) the host cost that makes them lose in eager mode is paid once, at capture.
    """
    if ns.virtual_pipeline_model_parallel_size is not None:
        raise ConfigError("--virtual-pipeline-model-parallel-size is not supported yet; leave it unset.")
    explicit = getattr(ns, "explicit", frozenset())
    # Megatron's torch.compile'd SwiGLU and bias-dropout-add (its defaults) only next to TransformerEngine's layers.
    # With the local spec they cost more than they save: an H100 trained the Qwen3-0.6B shape at 19.8k tok/s with
    # them and 22.3k without (`ci/gpu/megatron/device.sh fusions`), because that step is bound by the host, and each
    # compiled call's guards outweigh the kernels it saves. The CPU stays eager too (inductor would compile C++ in
    # every test world). GELU models keep the unfused activation. Softmax and rope fusions need apex / TE kernels:
    # off. Megatron's gradient-accumulation fusion needs apex too (its linears refuse the flag without it), so it
    # stays off here and `--[no-]gradient-accumulation-fusion` instead picks the local spec's own fused linears
    # (`slime.megatron.wgrad_fusion`, through `model.build_bridge`). `bias_dropout_fusion` also switches the local
    # spec's compiled RMSNorm and packed RoPE (`slime.megatron.fused_elementwise`).
    fused = not on_cpu and (transformer_engine_available() or fused_elementwise)
    overrides: dict[str, Any] = {
        "sequence_parallel": bool(ns.sequence_parallel and ns.tensor_model_parallel_size > 1),
        "variable_seq_lengths": True,
        "calculate_per_token_loss": True,
        "masked_softmax_fusion": False,
        "bias_activation_fusion": bool(fused and ns.swiglu and ns.bias_swiglu_fusion),
        "bias_dropout_fusion": bool(fused and ns.bias_dropout_fusion),
        "apply_rope_fusion": False,
        "gradient_accumulation_fusion": False,
        "use_cpu_initialization": on_cpu,
        "init_method_std": ns.init_method_std,
        "attention_softmax_in_fp32": ns.attention_softmax_in_fp32,
        "deterministic_mode": ns.deterministic_mode,
        "recompute_granularity": ns.recompute_granularity,
        "recompute_method": ns.recompute_method,
        "recompute_num_layers": ns.recompute_num_layers,
        "distribute_saved_activations": ns.distribute_saved_activations,
        "rotary_interleaved": ns.rotary_interleaved,
        "moe_grouped_gemm": ns.moe_grouped_gemm,
        "moe_aux_loss_coeff": ns.moe_aux_loss_coeff,
        "moe_router_load_balancing_type": ns.moe_router_load_balancing_type,
        # slime: the allgather dispatcher is replaced by alltoall.
        "moe_token_dispatcher_type": "alltoall"
        if ns.moe_token_dispatcher_type == "allgather"
        else ns.moe_token_dispatcher_type,
    }
    if ns.recompute_modules is not None:
        overrides["recompute_modules"] = list(ns.recompute_modules)
    # Dropouts: HF's values (via mbridge) unless given on the command line.
    for dest in ("attention_dropout", "hidden_dropout"):
        if dest in explicit:
            overrides[dest] = getattr(ns, dest)
    return overrides


def ddp_config(ns: argparse.Namespace):
    """Megatron's `DistributedDataParallelConfig` (fp32 gradient reduction, distributed optimizer)."""
    from megatron.core.distributed import DistributedDataParallelConfig

    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=ns.overlap_grad_reduce,
        overlap_param_gather=ns.overlap_param_gather,
        use_distributed_optimizer=ns.use_distributed_optimizer,
        check_for_nan_in_grad=False,
    )


def optimizer_config(ns: argparse.Namespace):
    """Megatron's `OptimizerConfig` from the optimizer flags."""
    from megatron.core.optimizer import OptimizerConfig

    dtype = params_dtype(ns)
    return OptimizerConfig(
        optimizer=ns.optimizer,
        lr=ns.lr,
        min_lr=ns.min_lr,
        weight_decay=ns.weight_decay,
        adam_beta1=ns.adam_beta1,
        adam_beta2=ns.adam_beta2,
        adam_eps=ns.adam_eps,
        sgd_momentum=ns.sgd_momentum,
        clip_grad=ns.clip_grad,
        bf16=dtype is torch.bfloat16,
        fp16=dtype is torch.float16,
        params_dtype=dtype,
        use_distributed_optimizer=ns.use_distributed_optimizer,
        overlap_param_gather=ns.overlap_param_gather,
        optimizer_cpu_offload=ns.optimizer_cpu_offload,
        optimizer_offload_fraction=ns.optimizer_offload_fraction,
        use_precision_aware_optimizer=ns.use_precision_aware_optimizer,
    )


def scheduler_kwargs(ns: argparse.Namespace) -> dict[str, Any]:
    """Arguments of Megatron's `OptimizerParamScheduler`, counted in optimizer steps."""
    decay_steps = ns.lr_decay_iters or ns.train_iters or _NEVER_DECAY
    warmup = ns.lr_warmup_iters
    if ns.lr_warmup_fraction is not None:
        warmup = int(ns.lr_warmup_fraction * decay_steps) if decay_steps != _NEVER_DECAY else 0
    start_wd = ns.weight_decay if ns.start_weight_decay is None else ns.start_weight_decay
    end_wd = ns.weight_decay if ns.end_weight_decay is None else ns.end_weight_decay
    return {
        "init_lr": ns.lr_warmup_init,
        "max_lr": ns.lr,
        "min_lr": ns.min_lr,
        "lr_warmup_steps": warmup,
        "lr_decay_steps": decay_steps,
        "lr_decay_style": ns.lr_decay_style,
        "start_wd": start_wd,
        "end_wd": end_wd,
        "wd_incr_steps": decay_steps,
        "wd_incr_style": ns.weight_decay_incr_style,
    }
