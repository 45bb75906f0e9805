"""Derived defaults: turn validated, parsed `args` plus environment facts into the run's final `args`.

slime computes these inside its validator by assigning to `args`; here they are one explicit step that
returns a NEW namespace (the parsed one is left untouched), so what the user typed and what the run uses
can both be logged. Environment facts (GPU present, which backends import) come in as a value, which keeps
this module free of probing and easy to test.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import warnings

from slime.types import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Environment:
    """What this machine offers; `detect()` fills it in."""

    num_gpus: int
    has_megatron: bool
    has_sglang: bool

    @classmethod
    def detect(cls) -> Environment:
        """Probe the current process (imports torch lazily: only when asked)."""
        num_gpus = 0
        if importlib.util.find_spec("torch") is not None:
            import torch  # local: probing must not import torch at module import time

            num_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return cls(
            num_gpus=num_gpus,
            has_megatron=importlib.util.find_spec("megatron") is not None,
            has_sglang=importlib.util.find_spec("sglang") is not None,
        )


def _backend(args: argparse.Namespace, env: Environment) -> str:
    if args.train_backend != "auto":
        if args.train_backend == "megatron" and not env.has_megatron:
            raise ConfigError("--train-backend megatron needs megatron-core (install slime-megatron).")
        return str(args.train_backend)
    return "megatron" if env.num_gpus > 0 and env.has_megatron else "fsdp"


def _engine(args: argparse.Namespace, env: Environment) -> str:
    if args.rollout_engine != "auto":
        if args.rollout_engine == "sglang" and not env.has_sglang:
            raise ConfigError("--rollout-engine sglang needs SGLang: install `slime-sglang[engine]` on a GPU machine.")
        return str(args.rollout_engine)
    return "sglang" if env.num_gpus > 0 and env.has_sglang else "local"


def _batch_sizes(args: argparse.Namespace) -> tuple[int, int]:
    total = args.rollout_batch_size * args.n_samples_per_prompt
    if args.num_steps_per_rollout is not None:
        return total // args.num_steps_per_rollout, args.num_steps_per_rollout
    gbs = args.global_batch_size or total
    return gbs, total // gbs


def _offload(args: argparse.Namespace) -> tuple[bool, bool]:
    offload_train, offload_rollout = args.offload_train, args.offload_rollout
    if args.offload:
        offload_train = True if offload_train is None else offload_train
        offload_rollout = True if offload_rollout is None else offload_rollout
    if args.colocate:
        offload_train = True if offload_train is None else offload_train
        offload_rollout = True if offload_rollout is None else offload_rollout
    if args.advantage_estimator == "ppo":
        offload_train = bool(offload_train) or bool(args.colocate)
    if args.debug_rollout_only:
        return False, False
    return bool(offload_train), bool(offload_rollout)


def resolve(args: argparse.Namespace, env: Environment) -> argparse.Namespace:
    """Return a new namespace with every derived default filled in (slime's semantics, documented per line)."""
    out = argparse.Namespace(**vars(args))
    out.train_backend = _backend(args, env)
    out.rollout_engine = _engine(args, env)
    out.eps_clip_high = args.eps_clip if args.eps_clip_high is None else args.eps_clip_high
    if args.advantage_estimator == "cispo" and args.eps_clip < 1:
        warnings.warn("CISPO is usually run with --eps-clip >= 1 (no lower bound).", UserWarning, stacklevel=2)
    out.eval_reward_key = args.reward_key if args.eval_reward_key is None else args.eval_reward_key
    out.over_sampling_batch_size = args.over_sampling_batch_size or args.rollout_batch_size
    out.global_batch_size, out.num_steps_per_rollout = _batch_sizes(args)
    # A group of one has no spread: dividing by its std would divide by zero (slime rule 24).
    out.grpo_std_normalization = args.grpo_std_normalization and args.n_samples_per_prompt > 1
    out.use_critic = args.advantage_estimator == "ppo"
    out.offload_train, out.offload_rollout = _offload(args)
    out.debug_train_only = args.debug_train_only or bool(args.load_debug_rollout_data)
    out.balance_data = args.balance_data or args.balance_by_flops
    out.log_probs_max_tokens_per_gpu = args.log_probs_max_tokens_per_gpu or args.max_tokens_per_gpu
    out.eval_function_path = args.eval_function_path or args.rollout_function_path
    if args.rollout_max_prompt_len is None and args.rollout_max_context_len is not None:
        out.rollout_max_prompt_len = args.rollout_max_context_len - 1
    out.eval_max_context_len = args.eval_max_context_len or args.rollout_max_context_len
    if args.dump_details:
        out.save_debug_rollout_data = os.path.join(args.dump_details, "rollout_data", "{rollout_id}.json")
        out.save_debug_train_data = os.path.join(args.dump_details, "train_data", "{rollout_id}.json")
    actor_gpus = args.actor_num_nodes * args.actor_num_gpus_per_node
    if args.rollout_num_gpus is None and (args.colocate or args.debug_rollout_only):
        out.rollout_num_gpus = actor_gpus
    out.rollout_external = bool(args.rollout_external_engine_addrs)
    if args.colocate and args.debug_rollout_only:
        out.colocate = False
    return out
