"""`ActorConfig`: slime's own flags that drive the Megatron actor (Megatron's own flags live in `megatron_args`).

Field names are slime's flag names (`--max-tokens-per-gpu` -> `max_tokens_per_gpu`) with slime's defaults,
except where noted. It only holds and validates values.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from slime.types import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ActorConfig:
    """Settings of `MegatronPolicy` that are not Megatron flags."""

    hf_checkpoint: str
    """HF model folder: config (the model shape), tokenizer, and the initial weights when nothing else is loaded."""
    ref_load: str | None = None
    """Reference weights: a torch_dist root or an HF folder; also the actor's start when `--load` has none.
    Unlike slime, a KL term without `--ref-load` uses `hf_checkpoint` as the reference."""
    ref_ckpt_step: int | None = None
    """Iteration to read from `ref_load` (default: its tracker file)."""
    use_dynamic_batch_size: bool = False
    """Pack micro-batches by tokens (`max_tokens_per_gpu`) instead of `--micro-batch-size` samples."""
    max_tokens_per_gpu: int | None = None
    """Token cap of a packed micro-batch with dynamic batch size; a longer sample gets a micro-batch alone."""
    train_cuda_graphs: bool = False
    """Replay CUDA graphs of the model's forward and backward for training micro-batches, each padded to
    `max_tokens_per_gpu` (`slime.megatron.cuda_graphs`; not a slime flag). Needs dynamic batch size."""
    log_probs_max_tokens_per_gpu: int | None = None
    """Token cap for the forward-only log-prob passes (default: `max_tokens_per_gpu`). Unlike slime, it is used."""
    data_pad_size_multiplier: int = 128
    """Packed micro-batches are padded to a multiple of this times the TP size."""
    log_probs_chunk_size: int = -1
    """Rows per fp32 chunk of the vocab-parallel log-prob; -1 picks about 16M logits per chunk (slime: no chunk)."""
    rollout_temperature: float = 1.0
    """Logits are divided by it before log-probs, as the engine sampled with it."""
    num_steps_per_rollout: int | None = None
    """Optimizer steps per rollout; default `len(batch) // --global-batch-size` (1 without a global batch size)."""
    keep_old_actor: bool = False
    """Keep the policy before the latest update in host memory and use it for the old log-probs."""
    ref_update_interval: int | None = None
    """Copy the actor into the reference every N rollouts."""
    use_rollout_entropy: bool = False
    """Also compute entropy in the log-prob passes."""
    reset_optimizer_states: bool = False
    """Zero the optimizer's moments at the start of every rollout's training."""
    update_weight_buffer_size: int = 512 * 1024**2
    """Bytes of HF-named tensors materialised per export bucket."""
    opd_type: Literal["sglang", "megatron"] | None = None
    """On-policy distillation's teacher (used when the loss has `use_opd`): "megatron" holds the teacher
    `opd_teacher_load` in host memory and computes its log-probs here; "sglang" reads `TrainSample.teacher_log_probs`
    (filled during the rollout by slime's OPD reward post-process)."""
    opd_teacher_load: str | None = None
    """Teacher weights for `opd_type="megatron"` (a torch_dist root or an HF folder); forbidden otherwise."""
    opd_teacher_ckpt_step: int | None = None
    """Iteration to read from `opd_teacher_load` (default: its tracker file)."""

    def __post_init__(self) -> None:
        if self.use_dynamic_batch_size and not self.max_tokens_per_gpu:
            raise ConfigError(
                f"`max_tokens_per_gpu` is {self.max_tokens_per_gpu!r} with `use_dynamic_batch_size`; "
                "set --max-tokens-per-gpu (e.g. 4608) or drop --use-dynamic-batch-size."
            )
        if self.train_cuda_graphs and not self.use_dynamic_batch_size:
            raise ConfigError(
                "`train_cuda_graphs` pads every micro-batch to --max-tokens-per-gpu: add --use-dynamic-batch-size "
                "and --max-tokens-per-gpu, or drop --train-cuda-graphs."
            )
        for name in ("max_tokens_per_gpu", "log_probs_max_tokens_per_gpu", "num_steps_per_rollout"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"`{name}` must be >= 1 (got {value}); use a positive integer or leave it unset.")
        if self.data_pad_size_multiplier < 1:
            raise ConfigError(f"`data_pad_size_multiplier` must be >= 1 (got {self.data_pad_size_multiplier}).")
        if not self.rollout_temperature > 0:
            raise ConfigError(f"`rollout_temperature` must be > 0 (got {self.rollout_temperature}).")
        if self.log_probs_chunk_size == 0 or self.log_probs_chunk_size < -1:
            raise ConfigError(f"`log_probs_chunk_size` must be -1 or >= 1 (got {self.log_probs_chunk_size}).")
        self._check_opd()
        if self.update_weight_buffer_size < 1:
            raise ConfigError(f"`update_weight_buffer_size` must be >= 1 (got {self.update_weight_buffer_size}).")

    def _check_opd(self) -> None:
        if self.opd_type not in (None, "sglang", "megatron"):
            raise ConfigError(f"`opd_type` is {self.opd_type!r}; use --opd-type sglang or --opd-type megatron.")
        if self.opd_type == "megatron" and not self.opd_teacher_load:
            raise ConfigError(
                "`opd_type` is 'megatron' but `opd_teacher_load` is unset; pass --opd-teacher-load DIR (the teacher)."
            )
        if self.opd_type != "megatron" and self.opd_teacher_load:
            raise ConfigError(
                f"`opd_teacher_load` is {self.opd_teacher_load!r} with `opd_type` {self.opd_type!r}; only "
                "--opd-type megatron loads a teacher here. Drop --opd-teacher-load or use --opd-type megatron."
            )

    @property
    def train_tokens_cap(self) -> int | None:
        """Token cap for training micro-batches (None: fixed micro-batch size)."""
        return self.max_tokens_per_gpu if self.use_dynamic_batch_size else None

    @property
    def log_probs_tokens_cap(self) -> int | None:
        """Token cap for forward-only passes (None: fixed micro-batch size)."""
        if not self.use_dynamic_batch_size:
            return None
        return self.log_probs_max_tokens_per_gpu or self.max_tokens_per_gpu
