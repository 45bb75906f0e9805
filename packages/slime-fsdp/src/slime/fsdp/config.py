"""`FSDPConfig`: the FSDP trainer's flags, with slime's names and Megatron's defaults, validated.

It only holds and checks values; the trainer (`slime.fsdp.policy`) reads it. Loss and advantage flags live
in the nested `slime.loss.LossConfig`. Nothing here touches torch or the file system.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

from slime.loss import LossConfig
from slime.loss.config import KL_REWARD_ESTIMATORS
from slime.types import ConfigError

LrDecayStyle = Literal["constant", "linear", "cosine"]
Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
OpdType = Literal["sglang", "megatron"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class FSDPConfig:
    """Everything the FSDP trainer needs; field names are slime's flag names (`--max-tokens-per-gpu`)."""

    hf_checkpoint: str
    """HF model folder: architecture, tokenizer and (unless `load` resumes) the initial weights."""
    load: str | None = None
    """A checkpoint written by `save_checkpoint` (its root or one `iter_*` folder) to resume from."""
    ref_load: str | None = None
    """HF folder of the reference model; None means `hf_checkpoint` (the weights training started from)."""
    save: str | None = None
    """Root folder of DCP checkpoints (`<save>/iter_0000012/`, tracker `latest_checkpointed_iteration.txt`)."""
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    """Advantage estimator, clipping, KL, entropy, TIS and the loss reduction."""

    lr: float = 1e-6
    """Peak learning rate (slime's default); the critic's too unless `critic_lr` is set."""
    min_lr: float = 0.0
    """Floor of the linear / cosine decay."""
    lr_decay_style: LrDecayStyle = "constant"
    """constant, linear or cosine decay after the warmup (Megatron's schedule)."""
    lr_warmup_iters: int = 0
    """Optimizer steps of linear warmup from `lr_warmup_init` to `lr`."""
    lr_warmup_init: float = 0.0
    """Learning rate at step 0 of the warmup (Megatron: the first step runs with it)."""
    lr_decay_iters: int | None = None
    """Step at which linear / cosine decay reaches `min_lr`; required for those styles."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (Megatron's default)."""
    adam_beta1: float = 0.9
    """AdamW first-moment decay (Megatron's default)."""
    adam_beta2: float = 0.999
    """AdamW second-moment decay (Megatron's default)."""
    adam_eps: float = 1e-8
    """AdamW denominator epsilon."""
    clip_grad: float = 1.0
    """Global gradient-norm clip; 0 disables clipping (the norm is still reported)."""
    reset_optimizer_states: bool = False
    """Zero AdamW's step and moments at the start of every `train()` call."""

    use_dynamic_batch_size: bool = False
    """Pack micro-batches first-fit under `max_tokens_per_gpu` instead of `micro_batch_size` samples."""
    max_tokens_per_gpu: int | None = None
    """Token budget of one packed micro-batch (prompt + response tokens); required with dynamic batch size."""
    micro_batch_size: int = 1
    """Samples per micro-batch without dynamic batch size."""
    global_batch_size: int | None = None
    """Samples per optimizer step (all ranks); trailing samples that do not fill a step are dropped."""
    num_steps_per_rollout: int | None = None
    """Optimizer steps per `train()` call; sets the step size to len(batch) // this. Excludes global_batch_size."""

    rollout_temperature: float = 1.0
    """Logits are divided by it before log-probs and entropy, as the engine sampled."""
    log_probs_chunk_size: int = -1
    """Rows per block of the fused log-prob/entropy over [T, V] logits; -1 picks ~16M logits per block."""
    seed: int = 1234
    """Seeds torch on every rank (dropout, LoRA init)."""

    lora_rank: int = 0
    """LoRA rank through peft; 0 trains all weights."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = lora_alpha / lora_rank)."""
    target_modules: str = "all-linear"
    """Comma-separated module names to adapt (`q_proj,v_proj`), or `all-linear`."""

    num_critic_only_steps: int = 0
    """PPO: rollouts `0 .. num_critic_only_steps - 1` train only the critic (the actor is left untouched)."""
    critic_load: str | None = None
    """PPO: HF folder whose trunk (no LM head) initialises the critic; None means `hf_checkpoint`. A resumed
    checkpoint (`load`) holding a critic takes precedence."""
    critic_lr: float | None = None
    """PPO: the critic's peak learning rate; None means `lr`. Its schedule otherwise follows the actor's flags."""
    critic_lr_warmup_iters: int = 0
    """PPO: optimizer steps of the critic's linear warmup (from `lr_warmup_init`)."""

    opd_type: OpdType | None = None
    """On-policy distillation teacher: `sglang` (teacher log-probs arrive on the batch) or `megatron` (a teacher
    model loaded from `opd_teacher_load` in this trainer, weights kept in host memory and swapped in). Required
    with `loss.use_opd`."""
    opd_teacher_load: str | None = None
    """HF folder of the teacher (same architecture as the actor); required by opd_type=megatron, else forbidden."""
    opd_teacher_ckpt_step: int | None = None
    """Megatron teacher iteration; an HF folder has none, so it must stay None here."""

    device: Device = "auto"
    """cuda when available, else cpu (gloo)."""
    param_dtype: DType = "auto"
    """Compute dtype of forward/backward (master weights stay float32): bfloat16 on cuda, float32 on cpu."""
    gradient_checkpointing: bool = False
    """Recompute decoder-layer activations in backward."""
    compile: bool = False
    """`torch.compile` each decoder layer (fuses norms, rotary and activations; needs a C++/Triton toolchain)."""
    update_weight_buffer_size: int = 512 * 1024**2
    """Bytes of full (gathered) tensors materialised at once by `export_weights` (slime's default)."""
    export_dtype: DType = "auto"
    """dtype of exported weights (`export_weights`, `export_hf`); auto = the HF config's dtype."""

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_optimizer(self)
        _check_batching(self)
        _check_critic(self)
        _check_opd(self)
        if not self.hf_checkpoint:
            raise ConfigError("`hf_checkpoint` is empty; set --hf-checkpoint to an HF model folder.")
        if self.rollout_temperature <= 0:
            raise ConfigError(
                f"`rollout_temperature` must be > 0 (got {self.rollout_temperature}); greedy rollouts have no "
                "log-probs, train with the temperature the engine sampled at."
            )
        if self.lora_rank < 0 or (self.lora_rank > 0 and self.lora_alpha <= 0):
            raise ConfigError(
                f"`lora_rank`={self.lora_rank} / `lora_alpha`={self.lora_alpha}: use rank >= 0, alpha > 0."
            )
        if self.update_weight_buffer_size < 1:
            raise ConfigError(f"`update_weight_buffer_size` must be >= 1 byte (got {self.update_weight_buffer_size}).")

    @property
    def needs_ref(self) -> bool:
        """Whether reference log-probs are needed: KL loss, or a KL reward penalty of ppo / REINFORCE++."""
        kl_reward = self.loss.kl_coef != 0 and self.loss.advantage_estimator in KL_REWARD_ESTIMATORS
        return self.loss.use_kl_loss or kl_reward

    @property
    def critic_optimizer(self) -> FSDPConfig:
        """This config with the critic's learning-rate flags in place of the actor's (for its optimizer)."""
        critic_lr = self.lr if self.critic_lr is None else self.critic_lr
        return dataclasses.replace(
            self, lr=critic_lr, min_lr=min(self.min_lr, critic_lr), lr_warmup_iters=self.critic_lr_warmup_iters
        )

    @property
    def chunk_size(self) -> int | None:
        """`log_probs_chunk_size` as slime.loss takes it (None = automatic)."""
        return None if self.log_probs_chunk_size == -1 else self.log_probs_chunk_size


def _check_choices(c: FSDPConfig) -> None:
    for field, literal in (
        ("lr_decay_style", LrDecayStyle),
        ("device", Device),
        ("param_dtype", DType),
        ("export_dtype", DType),
    ):
        value = getattr(c, field)
        if value not in get_args(literal):
            raise ConfigError(f"`{field}` must be one of {list(get_args(literal))} (got {value!r}).")


def _check_optimizer(c: FSDPConfig) -> None:
    if c.lr < 0 or c.min_lr < 0 or c.min_lr > c.lr:
        raise ConfigError(f"need 0 <= min_lr <= lr (got min_lr={c.min_lr}, lr={c.lr}); lower --min-lr.")
    if c.lr_warmup_iters < 0:
        raise ConfigError(f"`lr_warmup_iters` must be >= 0 (got {c.lr_warmup_iters}).")
    if c.lr_decay_style != "constant" and (c.lr_decay_iters is None or c.lr_decay_iters <= c.lr_warmup_iters):
        raise ConfigError(
            f"`lr_decay_iters`={c.lr_decay_iters} with lr_decay_style={c.lr_decay_style!r}: set --lr-decay-iters to "
            f"the step where the decay reaches min_lr, greater than lr_warmup_iters={c.lr_warmup_iters}."
        )
    if not (0 <= c.adam_beta1 < 1 and 0 <= c.adam_beta2 < 1) or c.adam_eps <= 0:
        raise ConfigError(
            f"AdamW needs betas in [0, 1) and eps > 0 (got {c.adam_beta1}, {c.adam_beta2}, {c.adam_eps})."
        )
    if c.clip_grad < 0 or c.weight_decay < 0:
        raise ConfigError(f"`clip_grad` ({c.clip_grad}) and `weight_decay` ({c.weight_decay}) must be >= 0.")


def _check_batching(c: FSDPConfig) -> None:
    if c.use_dynamic_batch_size and (c.max_tokens_per_gpu is None or c.max_tokens_per_gpu < 1):
        raise ConfigError(
            f"`max_tokens_per_gpu`={c.max_tokens_per_gpu}: --use-dynamic-batch-size needs --max-tokens-per-gpu >= 1."
        )
    if c.micro_batch_size < 1:
        raise ConfigError(f"`micro_batch_size` must be >= 1 (got {c.micro_batch_size}).")
    if c.global_batch_size is not None and c.num_steps_per_rollout is not None:
        raise ConfigError(
            f"`global_batch_size`={c.global_batch_size} and `num_steps_per_rollout`={c.num_steps_per_rollout} "
            "both set; set only one (slime derives one from the other)."
        )
    for field in ("global_batch_size", "num_steps_per_rollout"):
        value = getattr(c, field)
        if value is not None and value < 1:
            raise ConfigError(f"`{field}` must be >= 1 or None (got {value}).")
    if c.log_probs_chunk_size == 0 or c.log_probs_chunk_size < -1:
        raise ConfigError(f"`log_probs_chunk_size` must be -1 (auto) or >= 1 (got {c.log_probs_chunk_size}).")


def _check_critic(c: FSDPConfig) -> None:
    if c.num_critic_only_steps < 0 or c.critic_lr_warmup_iters < 0 or (c.critic_lr is not None and c.critic_lr < 0):
        raise ConfigError(
            f"`num_critic_only_steps`={c.num_critic_only_steps}, `critic_lr_warmup_iters`={c.critic_lr_warmup_iters} "
            f"and `critic_lr`={c.critic_lr} must be >= 0; lower none of them below 0."
        )
    is_set = {
        "num_critic_only_steps": c.num_critic_only_steps != 0,
        "critic_load": c.critic_load is not None,
        "critic_lr": c.critic_lr is not None,
        "critic_lr_warmup_iters": c.critic_lr_warmup_iters != 0,
    }
    if not c.loss.use_critic and any(is_set.values()):
        name = next(k for k, v in is_set.items() if v)
        raise ConfigError(
            f"`{name}`={getattr(c, name)!r} has no effect with advantage_estimator={c.loss.advantage_estimator!r} "
            f"(no critic); drop --{name.replace('_', '-')} or use --advantage-estimator ppo."
        )
    decay_iters = c.lr_decay_iters if c.lr_decay_style != "constant" else None
    if c.loss.use_critic and decay_iters is not None and c.critic_lr_warmup_iters >= decay_iters:
        raise ConfigError(
            f"`critic_lr_warmup_iters`={c.critic_lr_warmup_iters} must be < lr_decay_iters={c.lr_decay_iters}; "
            "lower --critic-lr-warmup-iters."
        )


def _check_opd(c: FSDPConfig) -> None:
    if c.opd_type is not None and c.opd_type not in get_args(OpdType):
        raise ConfigError(f"`opd_type` must be one of {list(get_args(OpdType))} or None (got {c.opd_type!r}).")
    if c.loss.use_opd and c.opd_type is None:
        raise ConfigError("`opd_type` is None with use_opd=True; pass --opd-type sglang or --opd-type megatron.")
    if c.opd_teacher_load is not None and not c.loss.use_opd:
        raise ConfigError(
            f"`opd_teacher_load`={c.opd_teacher_load!r} without use_opd; add --use-opd or drop --opd-teacher-load."
        )
    if c.loss.use_opd and c.opd_type == "megatron" and c.opd_teacher_load is None:
        raise ConfigError(
            "`opd_teacher_load` is None with opd_type='megatron'; pass --opd-teacher-load <HF folder of the teacher>."
        )
    if c.loss.use_opd and c.opd_type == "sglang" and c.opd_teacher_load is not None:
        raise ConfigError(
            f"`opd_teacher_load`={c.opd_teacher_load!r} with opd_type='sglang' (the teacher runs in SGLang); "
            "drop --opd-teacher-load or use --opd-type megatron."
        )
    if c.opd_teacher_ckpt_step is not None:
        raise ConfigError(
            f"`opd_teacher_ckpt_step`={c.opd_teacher_ckpt_step}: the fsdp trainer loads the teacher from an HF folder, "
            "which has no checkpoint steps; drop --opd-teacher-ckpt-step."
        )
