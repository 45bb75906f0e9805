"""`FSDPPolicy`: the `slime.types.PolicyTrainer` over a transformers causal LM sharded with FSDP2.

`train()` follows slime's `train_actor` order: reference log-probs (weights swapped in from host memory,
or LoRA adapters disabled), teacher log-probs for on-policy distillation (a teacher swapped in the same way,
or the SGLang teacher's from the batch), old log-probs (recomputed, the engine's with `use_rollout_logprobs`,
or the detached current ones on slime's single-step fast path), the critic's values (ppo), advantages over
the whole batch, then `num_steps_per_rollout` optimizer steps over packed micro-batches, each a critic step
then an actor step (the actor's skipped during the first `num_critic_only_steps` rollouts). Every rank
receives the same batch and computes the same schedule; results are identical on every rank. Runs without
Ray: a plain process, torchrun, or spawned workers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from slime.fsdp import checkpoint
from slime.fsdp.config import FSDPConfig
from slime.fsdp.critic import FSDPCritic
from slime.fsdp.distributed import DistInfo, device_mesh, init_distributed
from slime.fsdp.forward import forward_packed
from slime.fsdp.forward_only import forward_only
from slime.fsdp.hf_export import NamedTensor, iter_hf_weights, write_hf_folder
from slime.fsdp.model import build_model, load_hf_model, reshard, trainable_parameters
from slime.fsdp.offload import Offloader
from slime.fsdp.optimizer import build_optimizer, build_scheduler, reset_optimizer_states
from slime.fsdp.packed_batch import pack
from slime.fsdp.rollout_data import RolloutTensors, fill_advantages
from slime.fsdp.schedule import BatchingPlan, plan_step, split_steps
from slime.fsdp.train_step import StepContext, train_step
from slime.fsdp.weight_backup import WeightBackup
from slime.loss.config import KL_REWARD_ESTIMATORS
from slime.loss.plugins import resolve_loss_plugins
from slime.sync.host_stash import summed_figures
from slime.types import ConfigError, ContractError, RolloutBatch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _check_supported(config: FSDPConfig) -> None:
    if config.lora_rank > 0 and config.opd_teacher_load is not None:
        raise ConfigError(
            f"`opd_teacher_load`={config.opd_teacher_load!r} with LoRA: the teacher's weights are swapped into the "
            "full model, which LoRA freezes; train without --lora-rank or use --opd-type sglang."
        )
    if config.lora_rank > 0 and config.ref_load not in (None, config.hf_checkpoint):
        raise ConfigError(
            f"`ref_load`={config.ref_load!r} with LoRA: the reference is the base model with adapters disabled; "
            "drop --ref-load or train without LoRA."
        )


class FSDPPolicy:
    """The FSDP2 actor (and PPO critic). Construct it on every rank (after `init_distributed`, or let it call that).

    `critic` is the `FSDPCritic` when `loss.advantage_estimator == "ppo"`, else None.
    """

    def __init__(self, config: FSDPConfig, info: DistInfo | None = None) -> None:
        _check_supported(config)
        self.config = config
        self.info = info or init_distributed(config.device)
        mesh = device_mesh(self.info)
        self.model = build_model(config, mesh, self.info.device)
        self._params = trainable_parameters(self.model)
        self.optimizer = build_optimizer(self._params, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.plugins = resolve_loss_plugins(config.loss)
        self._backup = WeightBackup(self.model)
        self._offloader = Offloader(self.model, self.optimizer)
        self.critic = FSDPCritic(config, mesh, self.info) if config.loss.use_critic else None
        self.global_step = 0
        self.start_rollout_id = 0
        if config.needs_ref and config.lora_rank == 0:
            self._init_ref()
        if config.loss.use_opd and config.opd_type == "megatron":
            self._load_backup("teacher", str(config.opd_teacher_load))
        if config.load is not None and checkpoint.resolve(config.load) is not None:
            self.load_checkpoint(config.load)

    def _init_ref(self) -> None:
        if self.config.ref_load in (None, self.config.hf_checkpoint):
            self._backup.save("ref")  # the weights just loaded from --hf-checkpoint
            return
        self._load_backup("ref", str(self.config.ref_load))

    def _load_backup(self, tag: str, hf_folder: str) -> None:
        # The full model exists on the host only while this rank's shards are cut from it; then it is freed.
        self._backup.set_from_full(tag, load_hf_model(hf_folder).state_dict(), source=hf_folder)

    @property
    def is_offloaded(self) -> bool:
        """Whether `offload()` moved the state to host memory."""
        return self._offloader.is_offloaded

    def _require_onloaded(self, what: str) -> None:
        if self.is_offloaded:
            raise ContractError(f"{what} needs the model on its device; call onload() first.")

    @contextlib.contextmanager
    def _weights(self, which: str) -> Iterator[None]:
        if which == "actor":
            yield
        elif which == "ref" and self.config.lora_rank > 0:
            # peft flips requires_grad on the parameters registered right now; they must be FSDP's shards (a
            # forward without backward leaves gathered ones registered), else the adapters come back frozen.
            reshard(self.model)
            with self.model.disable_adapter():  # type: ignore[operator]  # a peft model
                try:
                    yield
                finally:
                    reshard(self.model)
            for param in self._params:
                param.requires_grad_(True)
        elif which in ("ref", "teacher"):
            if which not in self._backup:
                raise ContractError(
                    f"no {which} weights: enable use_kl_loss / kl_coef (ref), or use_opd with opd_type='megatron'."
                )
            self._backup.save("actor")
            self._backup.restore(which)
            try:
                yield
            finally:
                self._backup.restore("actor")
                self._backup.drop("actor")
        else:
            raise ValueError(f"`which` must be 'actor', 'ref' or 'teacher' (got {which!r}).")

    def _plan(self) -> BatchingPlan:
        c = self.config
        max_tokens = c.max_tokens_per_gpu if c.use_dynamic_batch_size else None
        return BatchingPlan(
            world_size=self.info.world_size, micro_batch_size=c.micro_batch_size, max_tokens_per_gpu=max_tokens
        )

    def _local_plan(self, batch: RolloutBatch) -> list[list[int]]:
        lengths = [s.total_length for s in batch.samples]
        return plan_step(range(len(batch.samples)), lengths, self._plan())[self.info.rank]

    def compute_log_probs(self, batch: RolloutBatch, which: str = "actor") -> list[Tensor]:
        """Per-sample [R_i] float32 CPU log-probs of the response tokens under `which`: actor, ref or teacher.

        Collective: every rank calls it with the same batch and gets the same result.
        """
        self._require_onloaded("compute_log_probs")
        c = self.config

        def run(model, mb):
            return forward_packed(
                model, mb, temperature=c.rollout_temperature, chunk_size=c.chunk_size, with_entropy=False
            ).log_probs

        with self._weights(which):
            return forward_only(self.model, batch, self._local_plan(batch), self.info, run)

    def compute_values(self, batch: RolloutBatch) -> list[Tensor]:
        """The critic's per-sample [R_i] float32 CPU values (ppo only); same layout as `compute_log_probs`.

        Raises:
            ConfigError: there is no critic (the estimator is not ppo).
        """
        if self.critic is None:
            raise ConfigError("compute_values needs a critic; set --advantage-estimator ppo.")
        self._require_onloaded("compute_values")
        return self.critic.compute_values(batch, self._local_plan(batch))

    def _reuse_current_as_old(self, num_steps: int) -> bool:
        loss = self.config.loss
        kl_reward = loss.kl_coef != 0 and loss.advantage_estimator in KL_REWARD_ESTIMATORS
        return (
            num_steps == 1
            and loss.loss_type == "policy_loss"
            and not (kl_reward or loss.use_opd or loss.use_rollout_logprobs or loss.custom_advantage_function_path)
        )

    def prepare(self, batch: RolloutBatch, num_steps: int = 1) -> RolloutTensors:
        """Everything `train()` computes before its first step: ref / teacher / old log-probs, values, advantages.

        `num_steps` is the number of optimizer steps that will follow (1 allows slime's fast path). Collective.

        Raises:
            ContractError: the batch lacks log-probs the config asks it to carry (rollout or SGLang teacher).
        """
        loss = self.config.loss
        data = RolloutTensors.from_batch(batch)
        if self.config.needs_ref:
            data.ref_log_probs = self.compute_log_probs(batch, "ref")
        if loss.use_opd and self.config.opd_type == "megatron":
            data.teacher_log_probs = self.compute_log_probs(batch, "teacher")
        elif loss.use_opd and data.teacher_log_probs is None:
            raise ContractError(
                "use_opd with opd_type='sglang' needs teacher_log_probs on every sample of the batch (the OPD reward "
                "post-process fills them); check --custom-reward-post-process-path."
            )
        if loss.use_rollout_logprobs:
            if data.rollout_log_probs is None:
                raise ContractError("use_rollout_logprobs needs rollout_log_probs on every sample of the batch.")
            data.old_log_probs = data.rollout_log_probs
        elif not self._reuse_current_as_old(num_steps):
            data.old_log_probs = self.compute_log_probs(batch, "actor")
        if self.critic is not None:
            data.values = self.compute_values(batch)
        fill_advantages(loss, batch, data, self.plugins)
        return data

    def _step_context(self, reuse: bool) -> StepContext:
        c = self.config
        return StepContext(
            model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, params=self._params,
            loss_config=c.loss, plugins=self.plugins, info=self.info, temperature=c.rollout_temperature,
            chunk_size=c.chunk_size, clip_grad=c.clip_grad, reuse_current_as_old=reuse,
        )  # fmt: skip

    def train(self, rollout_id: int, batch: RolloutBatch) -> Mapping[str, float]:
        """Run the rollout's optimizer steps; return metrics averaged over steps (same on every rank).

        With a critic, each step is a critic step (metrics `critic-<name>`) then an actor step; rollouts below
        `num_critic_only_steps` train only the critic.
        """
        self._require_onloaded("train")
        start = time.perf_counter()
        c = self.config
        steps = split_steps(
            len(batch.samples), global_batch_size=c.global_batch_size, num_steps_per_rollout=c.num_steps_per_rollout
        )
        train_actor = self.critic is None or rollout_id >= c.num_critic_only_steps
        if c.reset_optimizer_states:
            self._settle()
            reset_optimizer_states(self.optimizer)
            if self.critic is not None:
                reset_optimizer_states(self.critic.optimizer)
        data = self.prepare(batch, len(steps))
        ctx = self._step_context(self._reuse_current_as_old(len(steps)))
        lengths = [s.total_length for s in batch.samples]
        per_step: list[dict[str, float]] = []
        for step_samples in steps:
            plan = plan_step(step_samples, lengths, self._plan())[self.info.rank]
            micro_batches = [pack(batch.samples, ids, self.info.device) for ids in plan]
            metrics: dict[str, float] = {}
            if self.critic is not None:
                critic = self.critic.train_step(micro_batches, data, step_samples, self.plugins)
                metrics |= {f"critic-{k}": v for k, v in critic.items()}
            if train_actor:
                metrics |= train_step(ctx, micro_batches, data, step_samples)
                self.global_step += 1
            per_step.append(metrics)
        self._offloader.start_offload()  # colocated: the optimizer state starts home during the weight push
        if self.critic is not None:
            self.critic.offloader.start_offload()
        elapsed = time.perf_counter() - start
        tokens = sum(lengths[i] for s in steps for i in s)
        return _summarise(per_step, tokens, elapsed, len(batch.samples) - sum(len(s) for s in steps))

    def export_weights(self) -> Iterator[NamedTensor]:
        """Full weights in HF names, a bucket (`update_weight_buffer_size` bytes) gathered at a time.

        Collective: every rank must exhaust the iterator. LoRA yields merged weights, never adapters.
        """
        self._require_onloaded("export_weights")
        return iter_hf_weights(self.model, bucket_bytes=self.config.update_weight_buffer_size, dtype=self.export_dtype)

    @property
    def export_dtype(self) -> torch.dtype:
        """dtype of exported weights: `export_dtype`, or the HF checkpoint's own dtype for `auto`."""
        if self.config.export_dtype != "auto":
            return _DTYPES[self.config.export_dtype]
        from transformers import AutoConfig

        dtype = getattr(AutoConfig.from_pretrained(self.config.hf_checkpoint), "dtype", None)
        return dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(str(dtype), torch.float32)

    def export_hf(self, out_dir: str | Path) -> Path:
        """Write an HF folder (safetensors + config + tokenizer) that transformers loads. Collective."""
        return write_hf_folder(
            self.export_weights(), out_dir, hf_checkpoint=self.config.hf_checkpoint,
            dtype=self.export_dtype, is_writer=self.info.rank == 0,
        )  # fmt: skip

    def _checkpoint_parts(self) -> dict[str, checkpoint.Part]:
        parts: dict[str, checkpoint.Part] = {"actor": (self.model, self.optimizer)}
        if self.critic is not None:
            parts["critic"] = (self.critic.model, self.critic.optimizer)
        return parts

    def save_checkpoint(self, rollout_id: int) -> str:
        """Atomic DCP checkpoint of model(s), optimizer(s), scheduler(s), RNG and counters under `save`. Collective."""
        if self.config.save is None:
            raise ConfigError("`save` is None; set --save to the checkpoint folder before saving.")
        self._require_onloaded("save_checkpoint")
        self._settle()
        extra = {"rollout_id": rollout_id, "global_step": self.global_step, "scheduler": self.scheduler.state_dict()}
        if self.critic is not None:
            extra["critic_scheduler"] = self.critic.scheduler.state_dict()
        return str(checkpoint.save(self.config.save, rollout_id, self._checkpoint_parts(), extra))

    def load_checkpoint(self, path: str | Path) -> int:
        """Resume from a `save_checkpoint` folder (root or `iter_*`); return its rollout id. Collective.

        A checkpoint without a critic leaves the critic as built (from `critic_load` / `hf_checkpoint`).
        """
        self._require_onloaded("load_checkpoint")
        self._settle()
        extra = checkpoint.load(path, self._checkpoint_parts())
        self.scheduler.load_state_dict(extra["scheduler"])
        if self.critic is not None and "critic" in extra["parts"]:
            self.critic.scheduler.load_state_dict(extra["critic_scheduler"])
        self.global_step = int(extra["global_step"])
        self.start_rollout_id = int(extra["rollout_id"]) + 1
        return int(extra["rollout_id"])

    def _settle(self) -> None:
        self._offloader.settle()  # optimizer state restored behind the forward/backward (see slime.fsdp.offload)
        if self.critic is not None:
            self.critic.offloader.settle()

    def offload(self) -> dict[str, float]:
        """Move parameters, gradients and optimizer state (actor and critic) to host memory (colocate); returns the
        offloaders' figures summed (`perf/offload_*`)."""
        return summed_figures(o.offload() for o in self._offloaders())

    def onload(self) -> dict[str, float]:
        """Inverse of `offload`; returns `perf/onload_*` figures."""
        return summed_figures(o.onload() for o in self._offloaders())

    def _offloaders(self) -> list[Offloader]:
        return [self._offloader] + ([self.critic.offloader] if self.critic is not None else [])


def _summarise(per_step: Sequence[dict[str, float]], tokens: int, elapsed: float, dropped: int) -> dict[str, float]:
    keys = sorted({k for step in per_step for k in step})
    out = {f"train/{k}": sum(step.get(k, 0.0) for step in per_step) / len(per_step) for k in keys}
    if "lr" in per_step[-1]:  # absent when only the critic trained
        out["train/lr"] = per_step[-1]["lr"]
    out |= {"train/num_steps": float(len(per_step)), "train/dropped_samples": float(dropped)}
    out |= {"perf/train_time_s": elapsed, "perf/tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0}
    return out
