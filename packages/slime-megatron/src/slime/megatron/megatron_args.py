"""Megatron's own command-line flags, declared here because the megatron-core wheel ships no `megatron.training`.

`parse_megatron_args(argv)` splits a command line into (Megatron namespace, remaining argv) so that slime.train
can compose it with slime's and SGLang's flags. The flags carry Megatron-LM's names, types and defaults, except
where slime re-defaults them (`--lr` 1e-6, `--distributed-timeout-minutes` 10; inventory Appendix A) and where
slime forces a value (`use_distributed_optimizer`, `bf16 = not fp16`, `variable_seq_lengths`).

The namespace also records which flags the user actually gave (`explicit`, a frozenset of dests), so that
`slime.megatron.model_shape` can fill model-shape flags from the HF config and refuse contradictions. Flags this
module does not declare stay in the remaining argv: the caller decides whether an unknown flag is an error.
This module imports neither torch nor megatron.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

_UNSET = object()

# (flag, type or action, Megatron default, extra argparse kwargs). Groups follow Megatron-LM's arguments.py.
_NETWORK = [
    ("--num-layers", int, None, {}),
    ("--hidden-size", int, None, {}),
    ("--ffn-hidden-size", int, None, {}),
    ("--num-attention-heads", int, None, {}),
    ("--kv-channels", int, None, {}),
    ("--group-query-attention", "store_true", False, {}),
    ("--num-query-groups", int, 1, {}),
    ("--max-position-embeddings", int, None, {}),
    ("--position-embedding-type", str, "learned_absolute", {"choices": ["learned_absolute", "rope", "none"]}),
    ("--use-rotary-position-embeddings", "store_true", False, {}),
    ("--rotary-base", int, 10000, {}),
    ("--rotary-percent", float, 1.0, {}),
    ("--rotary-interleaved", "store_true", False, {}),
    ("--make-vocab-size-divisible-by", int, 128, {}),
    ("--normalization", str, "LayerNorm", {"choices": ["LayerNorm", "RMSNorm"]}),
    ("--norm-epsilon", float, 1e-5, {}),
    ("--swiglu", "store_true", False, {}),
    ("--untie-embeddings-and-output-weights", "store_true", False, {}),
    ("--disable-bias-linear", "store_false", True, {"dest": "add_bias_linear"}),
    ("--add-qkv-bias", "store_true", False, {}),
    ("--qk-layernorm", "store_true", False, {}),
    ("--vocab-size", int, None, {}),
    ("--padded-vocab-size", int, None, {}),
    ("--seq-length", int, None, {}),
    ("--attention-dropout", float, 0.1, {}),
    ("--hidden-dropout", float, 0.1, {}),
    ("--init-method-std", float, 0.02, {}),
    ("--attention-softmax-in-fp32", "store_true", False, {}),
    ("--num-experts", int, None, {}),
    ("--moe-ffn-hidden-size", int, None, {}),
    ("--moe-router-topk", int, 2, {}),
    ("--moe-shared-expert-intermediate-size", int, None, {}),
    ("--moe-grouped-gemm", "store_true", False, {}),
    ("--moe-aux-loss-coeff", float, 0.0, {}),
    ("--moe-router-load-balancing-type", str, "aux_loss", {}),
    ("--moe-token-dispatcher-type", str, "allgather", {"choices": ["allgather", "alltoall", "flex"]}),
    ("--transformer-impl", str, "transformer_engine", {"choices": ["local", "transformer_engine"]}),
]
_PARALLEL = [
    ("--tensor-model-parallel-size", int, 1, {}),
    ("--pipeline-model-parallel-size", int, 1, {}),
    ("--virtual-pipeline-model-parallel-size", int, None, {}),
    ("--sequence-parallel", "store_true", False, {}),
    ("--context-parallel-size", int, 1, {}),
    ("--expert-model-parallel-size", int, 1, {}),
    ("--expert-tensor-parallel-size", int, None, {}),
    ("--distributed-backend", str, "nccl", {"choices": ["nccl", "gloo"]}),
    ("--distributed-timeout-minutes", int, 10, {}),
    ("--use-distributed-optimizer", "store_true", False, {}),
    ("--overlap-grad-reduce", "store_true", False, {}),
    ("--overlap-param-gather", "store_true", False, {}),
    ("--accumulate-allreduce-grads-in-fp32", "store_true", False, {}),
]
_TRAINING = [
    ("--micro-batch-size", int, None, {}),
    ("--global-batch-size", int, None, {}),
    ("--recompute-granularity", str, None, {"choices": ["full", "selective"]}),
    ("--recompute-method", str, None, {"choices": ["uniform", "block"]}),
    ("--recompute-num-layers", int, None, {}),
    ("--recompute-modules", str, None, {"nargs": "*"}),
    ("--distribute-saved-activations", "store_true", False, {}),
    ("--train-iters", int, None, {}),
    ("--seed", int, 1234, {}),
    ("--calculate-per-token-loss", "store_true", False, {}),
    ("--bf16", "store_true", False, {}),
    ("--fp16", "store_true", False, {}),
    ("--deterministic-mode", "store_true", False, {}),
    # Megatron's fusion switches (on by default there). slime.megatron honours the first two on GPUs next to
    # TransformerEngine (torch.compile'd elementwise kernels; the local spec measured faster without them: see
    # training_configs); the others need apex's or TransformerEngine's kernels and stay off without them.
    ("--no-bias-swiglu-fusion", "store_false", True, {"dest": "bias_swiglu_fusion"}),
    ("--no-bias-dropout-fusion", "store_false", True, {"dest": "bias_dropout_fusion"}),
    ("--no-bias-gelu-fusion", "store_false", True, {"dest": "bias_gelu_fusion"}),
    ("--no-masked-softmax-fusion", "store_false", True, {"dest": "masked_softmax_fusion"}),
    ("--no-gradient-accumulation-fusion", "store_false", True, {"dest": "gradient_accumulation_fusion"}),
    ("--no-rope-fusion", "store_false", True, {"dest": "apply_rope_fusion"}),
]
_OPTIMIZER = [
    ("--optimizer", str, "adam", {"choices": ["adam", "sgd"]}),
    ("--lr", float, 1e-6, {}),
    ("--min-lr", float, 0.0, {}),
    ("--lr-decay-style", str, "linear", {"choices": ["constant", "linear", "cosine", "inverse-square-root", "WSD"]}),
    ("--lr-decay-iters", int, None, {}),
    ("--lr-warmup-iters", int, 0, {}),
    ("--lr-warmup-fraction", float, None, {}),
    ("--lr-warmup-init", float, 0.0, {}),
    ("--weight-decay", float, 0.01, {}),
    ("--start-weight-decay", float, None, {}),
    ("--end-weight-decay", float, None, {}),
    ("--weight-decay-incr-style", str, "constant", {"choices": ["constant", "linear", "cosine"]}),
    ("--clip-grad", float, 1.0, {}),
    ("--adam-beta1", float, 0.9, {}),
    ("--adam-beta2", float, 0.999, {}),
    ("--adam-eps", float, 1e-8, {}),
    ("--sgd-momentum", float, 0.9, {}),
    ("--optimizer-cpu-offload", "store_true", False, {}),
    ("--optimizer-offload-fraction", float, 1.0, {}),
    ("--use-precision-aware-optimizer", "store_true", False, {}),
]
_CHECKPOINT = [
    ("--save", str, None, {}),
    ("--save-interval", int, None, {}),
    ("--no-save-optim", "store_true", False, {}),
    ("--no-save-rng", "store_true", False, {}),
    ("--load", str, None, {}),
    ("--no-load-optim", "store_true", False, {}),
    ("--no-load-rng", "store_true", False, {}),
    ("--finetune", "store_true", False, {}),
    ("--ckpt-step", int, None, {}),
    ("--ckpt-format", str, "torch_dist", {"choices": ["torch_dist"]}),
    ("--async-save", "store_true", False, {}),
]
GROUPS = {
    "network size": _NETWORK,
    "distributed": _PARALLEL,
    "training": _TRAINING,
    "optimizer": _OPTIMIZER,
    "checkpointing": _CHECKPOINT,
}
"""Every declared Megatron flag, by Megatron's argument group."""


def _dest(flag: str, extra: dict) -> str:
    return extra.get("dest", flag.lstrip("-").replace("-", "_"))


def build_parser(*, with_defaults: bool = True) -> argparse.ArgumentParser:
    """An argparse parser of the declared Megatron flags (no `-h`, no abbreviations, so it can be composed)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for title, flags in GROUPS.items():
        group = parser.add_argument_group(f"megatron: {title}")
        for flag, kind, default, extra in flags:
            value = default if with_defaults else _UNSET
            if isinstance(kind, str):
                group.add_argument(flag, action=kind, default=value, **extra)
            else:
                group.add_argument(flag, type=kind, default=value, **extra)
    return parser


def parse_megatron_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split `argv` into (Megatron namespace, the argv it did not consume).

    The namespace holds every declared flag (Megatron defaults where absent), `explicit` (dests given on the
    command line) and slime's forced values: `use_distributed_optimizer=True`, `bf16 = not fp16`,
    `variable_seq_lengths=True`.
    """
    probe, _ = build_parser(with_defaults=False).parse_known_args(list(argv))
    explicit = frozenset(k for k, v in vars(probe).items() if v is not _UNSET)
    namespace, remaining = build_parser().parse_known_args(list(argv))
    namespace.explicit = explicit
    namespace.use_distributed_optimizer = True
    namespace.bf16 = not namespace.fp16
    namespace.variable_seq_lengths = True
    return namespace, remaining


def declared_dests() -> frozenset[str]:
    """The namespace attributes `parse_megatron_args` fills (besides `explicit` and `variable_seq_lengths`)."""
    return frozenset(_dest(flag, extra) for flags in GROUPS.values() for flag, _, _, extra in flags)
