"""slime's validation rules as checks: each rule reads the parsed `args` and raises, never assigns.

The numbers refer to slime's own rule order (the project's inventory, section 1.2). Derived defaults are
computed afterwards by `resolve.py`. All failing rules are reported together in one `ConfigError`, each
line naming the flags, the values and the fix. Rules about features this project does not implement yet
say so instead of silently ignoring the flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from slime.types import ConfigError

Rule = Callable[[argparse.Namespace], str | None]

NOT_IMPLEMENTED: dict[str, str] = {
    "enable_mtp_training": "--enable-mtp-training",
    "use_routing_replay": "--use-routing-replay",
    "use_rollout_routing_replay": "--use-rollout-routing-replay",
    "release_train": "--release-train",
    "allgather_cp": "--allgather-cp",
    "multimodal_keys": "--multimodal-keys (VLM inputs)",
    "load_forge_rollout_data": "--load-forge-rollout-data",
    "prefill_num_servers": "--prefill-num-servers (PD disaggregation)",
    "sglang_config": "--sglang-config",
    "megatron_config_path": "--megatron-config-path",
    "use_distributed_post": "--use-distributed-post",
    "rollout_buffer_url": "--rollout-buffer-url (legacy external buffer)",
    "keep_old_actor": "--keep-old-actor",
    "use_stateless_adam": "--use-stateless-adam",
    "use_opsm": "--use-opsm",
    "custom_megatron_init_path": "--custom-megatron-init-path",
    "megatron_deepgemm_forward_layers": "--megatron-deepgemm-forward-layers",
    "megatron_deepgemm_moe_forward_layers": "--megatron-deepgemm-moe-forward-layers",
}
"""Flags whose feature is not built yet: setting them is an error, not a silent no-op."""


def _not_implemented(args: argparse.Namespace) -> str | None:
    used = [flag for attr, flag in NOT_IMPLEMENTED.items() if getattr(args, attr, None) not in (None, False, [], ())]
    if not used:
        return None
    return f"not implemented in this version: {', '.join(used)}. Remove the flag(s); the behaviour would be ignored."


def _r0_required(args: argparse.Namespace) -> str | None:
    if args.rollout_batch_size is None:
        return "--rollout-batch-size is required: prompts (groups) per rollout, e.g. --rollout-batch-size 32."
    if args.rollout_batch_size <= 0 or args.n_samples_per_prompt <= 0:
        return (
            f"--rollout-batch-size ({args.rollout_batch_size}) and --n-samples-per-prompt "
            f"({args.n_samples_per_prompt}) must be positive."
        )
    return None


def _r1_temperature(args: argparse.Namespace) -> str | None:
    if args.rollout_temperature <= 0:
        return (
            f"--rollout-temperature must be > 0 (got {args.rollout_temperature}); greedy decoding makes the "
            "policy's log-probs meaningless. Use e.g. --rollout-temperature 1.0."
        )
    return None


def _r2_reference(args: argparse.Namespace) -> str | None:
    if (args.kl_coef != 0 or args.use_kl_loss) and not (args.ref_load or args.hf_checkpoint):
        return "--kl-coef / --use-kl-loss need a reference model: pass --ref-load (or --hf-checkpoint for fsdp)."
    return None


def _r3_opd_switch(args: argparse.Namespace) -> str | None:
    teacher = args.opd_teacher_load
    if not args.use_opd and teacher is not None:
        return (
            f"--opd-teacher-load {teacher!r} is set but --use-opd is not: the teacher would be ignored. "
            "Add --use-opd --opd-type megatron, or drop --opd-teacher-load."
        )
    if args.use_opd and args.opd_type is None:
        return (
            "--use-opd requires --opd-type: sglang (teacher log-probs from a teacher server during the rollout, "
            "with --rm-url) or megatron (teacher checkpoint --opd-teacher-load held by the trainer)."
        )
    return None


def _r3_opd_teacher(args: argparse.Namespace) -> str | None:
    opd_type, teacher = args.opd_type, args.opd_teacher_load
    if not args.use_opd:
        return None
    if opd_type == "megatron" and teacher is None:
        return "--opd-type megatron requires --opd-teacher-load DIR (the teacher's checkpoint); pass it."
    if opd_type == "megatron" and not os.path.exists(teacher):
        return f"--opd-teacher-load {teacher!r} does not exist; pass the teacher checkpoint's directory."
    if opd_type == "sglang" and teacher is not None:
        return (
            f"--opd-teacher-load {teacher!r} is set with --opd-type sglang, which takes teacher log-probs from a "
            "teacher server during the rollout (--rm-url). Drop --opd-teacher-load, or use --opd-type megatron."
        )
    return None


def _r5_intervals(args: argparse.Namespace) -> str | None:
    if args.eval_interval is not None and not (args.eval_prompt_data or args.eval_config):
        return "--eval-interval needs eval data: add --eval-prompt-data NAME PATH (or --eval-config FILE)."
    if args.save_interval is not None and not args.save:
        return "--save-interval needs --save DIR (where checkpoints go)."
    return None


def _r6_two_kls(args: argparse.Namespace) -> str | None:
    if args.kl_coef != 0 and args.kl_loss_coef != 0:
        return (
            f"--kl-coef ({args.kl_coef}) and --kl-loss-coef ({args.kl_loss_coef}) cannot both be non-zero: choose "
            "a KL reward penalty or a KL loss term."
        )
    return None


def _r7_rpp_needs_whitening(args: argparse.Namespace) -> str | None:
    if args.advantage_estimator.startswith("reinforce_plus_plus") and not args.normalize_advantages:
        return f"--advantage-estimator {args.advantage_estimator} requires --normalize-advantages."
    return None


def _r8_logprob_sources(args: argparse.Namespace) -> str | None:
    if args.use_rollout_logprobs and args.use_tis:
        return "--use-rollout-logprobs excludes --use-tis (the TIS weight would always be 1); drop one of them."
    if args.get_mismatch_metrics and not args.custom_tis_function_path:
        return "--get-mismatch-metrics requires --custom-tis-function-path."
    return None


def _r9_r10_dynamic_batch(args: argparse.Namespace) -> str | None:
    if args.use_dynamic_batch_size and not args.max_tokens_per_gpu:
        return "--use-dynamic-batch-size requires --max-tokens-per-gpu N (the token budget of one micro-batch)."
    if args.balance_by_flops and not args.use_dynamic_batch_size:
        return "--balance-by-flops requires --use-dynamic-batch-size (and --max-tokens-per-gpu)."
    return None


def _r13_dump_paths(args: argparse.Namespace) -> str | None:
    if args.save_debug_rollout_data and args.save_debug_rollout_data == args.save_debug_train_data:
        return "--save-debug-rollout-data and --save-debug-train-data must be different paths."
    return None


def _r19_debug_modes(args: argparse.Namespace) -> str | None:
    if args.debug_rollout_only and (args.debug_train_only or args.load_debug_rollout_data):
        return "--debug-rollout-only excludes --debug-train-only / --load-debug-rollout-data."
    return None


def _r23_batch_arithmetic(args: argparse.Namespace) -> str | None:
    if args.rollout_batch_size is None:
        return None
    total = args.rollout_batch_size * args.n_samples_per_prompt
    steps, gbs = args.num_steps_per_rollout, args.global_batch_size
    if steps is not None and (steps <= 0 or total % steps):
        return f"--num-steps-per-rollout {steps} must divide rollout_batch_size x n_samples_per_prompt = {total}."
    if gbs is not None and (gbs <= 0 or total % gbs):
        return (
            f"--global-batch-size {gbs} must divide rollout_batch_size x n_samples_per_prompt = {total} "
            "(otherwise samples would be dropped); pick a divisor or use --num-steps-per-rollout."
        )
    if steps is not None and gbs is not None and gbs * steps != total:
        return (
            f"rollout_batch_size x n_samples_per_prompt = {total} but --global-batch-size {gbs} x "
            f"--num-steps-per-rollout {steps} = {gbs * steps}; they must be equal. Drop --global-batch-size."
        )
    return None


def _r25_over_sampling(args: argparse.Namespace) -> str | None:
    osbs = args.over_sampling_batch_size
    if osbs is not None and args.rollout_batch_size is not None and osbs < args.rollout_batch_size:
        return f"--over-sampling-batch-size ({osbs}) must be >= --rollout-batch-size ({args.rollout_batch_size})."
    return None


def _r26_length(args: argparse.Namespace) -> str | None:
    if args.num_rollout is None and args.num_epoch is None:
        return "set the run length: --num-rollout N (rollout steps) or --num-epoch N (passes over --prompt-data)."
    if args.num_rollout is None and not args.prompt_data:
        return "--num-epoch needs --prompt-data (epochs are passes over the prompt dataset)."
    return None


def _r29_lengths(args: argparse.Namespace) -> str | None:
    ctx, prompt = args.rollout_max_context_len, args.rollout_max_prompt_len
    if ctx is not None and prompt is not None and prompt > ctx:
        return f"--rollout-max-prompt-len ({prompt}) must be <= --rollout-max-context-len ({ctx})."
    return None


def _r30_freeze(args: argparse.Namespace) -> str | None:
    if args.only_train_params_name_list and args.freeze_params_name_list:
        return "--only-train-params-name-list and --freeze-params-name-list are mutually exclusive."
    return None


def _r31_r33_weight_transport(args: argparse.Namespace) -> str | None:
    if args.update_weight_transport == "disk" and not args.update_weight_disk_dir:
        return "--update-weight-transport disk requires --update-weight-disk-dir DIR (shared by trainer and engines)."
    if args.update_weight_mode == "delta":
        if args.update_weight_transport != "disk" or args.colocate:
            return "--update-weight-mode delta requires --update-weight-transport disk and no --colocate."
        if not args.update_weight_local_checkpoint_dir:
            return "--update-weight-mode delta requires --update-weight-local-checkpoint-dir DIR."
    return None


def _async_not_colocated(args: argparse.Namespace) -> str | None:
    if getattr(args, "async_loop", False) and args.colocate:
        return "the async loop (train_async.py) cannot run with --colocate: rollout and training must overlap."
    return None


RULES: tuple[Rule, ...] = (
    _not_implemented,
    _r0_required,
    _r1_temperature,
    _r2_reference,
    _r3_opd_switch,
    _r3_opd_teacher,
    _r5_intervals,
    _r6_two_kls,
    _r7_rpp_needs_whitening,
    _r8_logprob_sources,
    _r9_r10_dynamic_batch,
    _r13_dump_paths,
    _r19_debug_modes,
    _r23_batch_arithmetic,
    _r25_over_sampling,
    _r26_length,
    _r29_lengths,
    _r30_freeze,
    _r31_r33_weight_transport,
    _async_not_colocated,
)


def validate(args: argparse.Namespace) -> None:
    """Run every rule; raise one `ConfigError` listing every violation (each with its fix)."""
    problems = [msg for rule in RULES if (msg := rule(args)) is not None]
    if problems:
        raise ConfigError("invalid flags:\n  - " + "\n  - ".join(problems))
