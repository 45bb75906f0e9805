"""`MegatronPolicy`: the Megatron-core actor behind slime.types' `PolicyTrainer` Protocol.

One instance per rank, in a plain process or under torchrun (no Ray): it starts torch.distributed and Megatron's
parallel groups, builds the model from `--hf-checkpoint` through mbridge, loads weights as `load_plan` decides,
and then serves `compute_log_probs`, `train`, `save_checkpoint`, `load`, `export_weights`, `offload`, `onload`.
The reference (and the optional old actor, and the on-policy-distillation teacher of `--opd-type megatron`)
live in host memory (`WeightBackups`) and are swapped in for their forward pass. With `--opd-type sglang` the
teacher's log-probs come with the batch. With `advantage_estimator == "ppo"` it also owns a critic (`critic`)
trained 1:1 with the actor.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence

import torch

from slime.megatron import _megatron_globals as mg
from slime.megatron import training_configs
from slime.megatron.actor_config import ActorConfig
from slime.megatron.checkpoint import load_torch_dist, save_torch_dist
from slime.megatron.checkpoint_layout import is_megatron_checkpoint
from slime.megatron.critic import build_critic_stack
from slime.megatron.cuda_graphs import TrainGraphs, check_train_graphs
from slime.megatron.export import export_buckets
from slime.megatron.forward import HeadSpec, forward_only
from slime.megatron.load_plan import LoadPlan, Source, plan_loading, teacher_source
from slime.megatron.model import ModelStack, build_model_stack
from slime.megatron.offload import Offloader
from slime.megatron.packing import local_micro_batches
from slime.megatron.rollout_data import (
    PerSample,
    compute_batch_advantages,
    gather_over_data_parallel,
    opd_reverse_kl,
    rollout_log_probs,
    sample_denominators,
    teacher_log_probs,
)
from slime.megatron.train_step import StepInputs, actor_loss_fn, critic_loss_fn, optimizer_step
from slime.megatron.weight_backup import WeightBackups
from slime.sync.host_stash import summed_figures
from slime.types import ConfigError, NamedTensor, RolloutBatch, TrainSample

_KL_REWARD = frozenset({"reinforce_plus_plus", "reinforce_plus_plus_baseline", "ppo"})


class MegatronPolicy:
    """The Megatron actor (and PPO critic) of one rank; see the module docstring."""

    def __init__(self, megatron_args: argparse.Namespace, actor: ActorConfig, loss=None) -> None:
        from transformers import AutoConfig

        from slime.loss import LossConfig

        self.loss = loss if loss is not None else LossConfig()
        self.actor_config = actor
        if self.loss.use_opd and actor.opd_type is None:
            raise ConfigError(
                "use_opd needs a teacher: set --opd-type sglang (log-probs from the rollout) or --opd-type megatron "
                "with --opd-teacher-load DIR."
            )
        if megatron_args.async_save:
            raise ConfigError("--async-save is not supported yet (saves are synchronous and atomic); drop the flag.")
        backend = megatron_args.distributed_backend if torch.cuda.is_available() else "gloo"
        mg.init_distributed(backend=backend, timeout_minutes=megatron_args.distributed_timeout_minutes)
        mg.initialize_model_parallel(training_configs.parallel_sizes(megatron_args))
        mg.seed_everything(megatron_args.seed)
        hf_config = AutoConfig.from_pretrained(actor.hf_checkpoint)
        # under CUDA graphs the compiled elementwise fusions cost host time only at capture
        self.stack: ModelStack = build_model_stack(megatron_args, hf_config, fused_elementwise=actor.train_cuda_graphs)
        self.args = self.stack.args
        self.critic: ModelStack | None = build_critic_stack(megatron_args, hf_config) if self.loss.use_critic else None
        self.backups = WeightBackups(self.stack.modules)
        self._offloaders = [Offloader(s) for s in (self.stack, self.critic) if s is not None]
        self.graphs = self._train_graphs()
        self.start_rollout_id = self._load_initial()

    def _train_graphs(self) -> TrainGraphs | None:
        """The actor's CUDA graphs with `--train-cuda-graphs` (`slime.megatron.cuda_graphs`), else None."""
        if not self.actor_config.train_cuda_graphs:
            return None
        check_train_graphs(self.stack.config, device=mg.device())
        multiple = self._pad_multiple()
        tokens = -(-self.actor_config.max_tokens_per_gpu // multiple) * multiple
        return TrainGraphs(self.stack.models[0], tokens=tokens)

    # ----------------------------------------------------------------------------------------------- loading
    @property
    def need_ref(self) -> bool:
        """Whether a KL term needs reference log-probs."""
        kl_reward = self.loss.kl_coef != 0 and self.loss.advantage_estimator in _KL_REWARD
        return self.loss.use_kl_loss or kl_reward

    @property
    def _has_teacher(self) -> bool:
        """On-policy distillation with the teacher held here (`--opd-type megatron`)."""
        return self.loss.use_opd and self.actor_config.opd_type == "megatron"

    def _plan(self) -> LoadPlan:
        a = self.args
        return plan_loading(
            hf_checkpoint=self.actor_config.hf_checkpoint,
            load=a.load,
            ckpt_step=a.ckpt_step,
            ref_load=self.actor_config.ref_load,
            ref_ckpt_step=self.actor_config.ref_ckpt_step,
            no_load_optim=a.no_load_optim,
            no_load_rng=a.no_load_rng,
            finetune=a.finetune,
            need_ref=self.need_ref,
        )

    def _load_weights(self, stack: ModelStack, source: Source) -> int | str:
        if source.format == "hf":
            stack.bridge.load_hf_weights(stack.modules, source.path)
            stack.optimizer.reload_model_params()
            return 0
        return load_torch_dist(stack, source.path, step=source.step, load_optim=False, load_rng=False)

    def _load_initial(self) -> int:
        plan = self._plan()
        if plan.ref is not None:
            self._load_weights(self.stack, plan.ref)
            self.backups.save("ref")
        if self._has_teacher:
            cfg = self.actor_config
            self._load_weights(self.stack, teacher_source(cfg.opd_teacher_load, cfg.opd_teacher_ckpt_step))
            self.backups.save("teacher")
        if plan.resume:
            src = plan.actor
            iteration = load_torch_dist(
                self.stack, src.path, step=src.step, load_optim=plan.load_optim, load_rng=plan.load_rng
            )
        else:
            iteration = self._load_weights(self.stack, plan.actor)
        if self.critic is not None:
            self._load_critic(plan)
        if self.actor_config.keep_old_actor:
            self.backups.save("old_actor")
        return int(iteration) + 1 if plan.resume and iteration != "release" else 0

    def _load_critic(self, plan: LoadPlan) -> None:
        # The critic resumes from `<--load>/critic`; otherwise its trunk starts from HF weights (mbridge skips the
        # LM head for a value model), never from an actor torch_dist checkpoint whose head has the vocab shape.
        critic_root = f"{self.args.load}/critic" if plan.resume else None
        if critic_root is not None and is_megatron_checkpoint(critic_root):
            load_torch_dist(self.critic, critic_root, step=plan.actor.step, load_optim=plan.load_optim, load_rng=False)
            return
        hf = plan.actor.path if plan.actor.format == "hf" else self.actor_config.hf_checkpoint
        self._load_weights(self.critic, Source(format="hf", path=hf))

    def load(self, path: str | None = None, *, step: int | None = None, load_optim: bool = True) -> int | str:
        """Load a torch_dist checkpoint root (default `--load`) into the actor; returns its iteration."""
        root = path or self.args.load
        if root is None:
            raise ConfigError("load() needs a path or --load.")
        self._settle()
        return load_torch_dist(self.stack, root, step=step, load_optim=load_optim, load_rng=load_optim)

    # ------------------------------------------------------------------------------------------- log-probs
    def _pad_multiple(self) -> int:
        return self.actor_config.data_pad_size_multiplier * self.args.tensor_model_parallel_size

    def _head(self, *, with_entropy: bool = False) -> HeadSpec:
        vocab_local = self.stack.bridge.padded_vocab_size // self.args.tensor_model_parallel_size
        chunk = self.actor_config.log_probs_chunk_size
        return HeadSpec(
            kind="actor",
            temperature=self.actor_config.rollout_temperature,
            vocab_size=self.stack.bridge.vocab_size,
            chunk_size=chunk if chunk > 0 else max(1, (1 << 24) // max(1, vocab_local)),
            with_entropy=with_entropy,
        )

    def _batches(self, samples: Sequence[TrainSample], ids: Sequence[int], *, train: bool):
        cfg = self.actor_config
        return local_micro_batches(
            samples,
            ids,
            dp_rank=mg.dp_rank(),
            dp_size=mg.dp_size(),
            tokens_cap=cfg.train_tokens_cap if train else cfg.log_probs_tokens_cap,
            micro_batch_size=self.args.micro_batch_size,
            pad_multiple=self._pad_multiple(),
            device=mg.device(),
            decreasing=train and self.graphs is not None,  # padded to the cap: fewer micro-batches, less work
        )

    @contextlib.contextmanager
    def _weights(self, tag: str) -> Iterator[None]:
        if tag == "actor":
            yield
            return
        if tag not in self.backups.tags:
            raise ConfigError(f"no {tag!r} weights are held (tags: {sorted(self.backups.tags)}).")
        self.backups.save("actor")
        self.backups.load(tag)
        try:
            yield
        finally:
            self.backups.load("actor")

    def compute_log_probs(self, batch: RolloutBatch, *, model: str = "actor", with_entropy: bool = False):
        """Response-token log-probs of every sample under `model` ("actor", "ref", "old_actor", "teacher").

        Returns a list (batch order) of `[response_length]` float32 tensors, or `(log_probs, entropies)` with
        `with_entropy`. Collective: every rank must call it with the same batch; every rank gets all samples.
        """
        self.onload()
        samples = batch.samples
        batches = self._batches(samples, range(len(samples)), train=False)
        with self._weights(model):
            local = forward_only(self.stack, batches, self._head(with_entropy=with_entropy))
        log_probs = gather_over_data_parallel({k: v["log_probs"] for k, v in local.items()}, len(samples))
        if not with_entropy:
            return log_probs
        return log_probs, gather_over_data_parallel({k: v["entropy"] for k, v in local.items()}, len(samples))

    def compute_values(self, batch: RolloutBatch) -> PerSample:
        """The critic's values of every response token (PPO only); same layout as `compute_log_probs`."""
        if self.critic is None:
            raise ConfigError("compute_values needs --advantage-estimator ppo (a critic).")
        self.onload()
        samples = batch.samples
        local = forward_only(
            self.critic, self._batches(samples, range(len(samples)), train=False), HeadSpec(kind="critic")
        )
        return gather_over_data_parallel({k: v["values"] for k, v in local.items()}, len(samples))

    # ---------------------------------------------------------------------------------------------- train
    def _num_steps(self, num_samples: int) -> int:
        steps = self.actor_config.num_steps_per_rollout
        gbs = self.args.global_batch_size
        if steps is None:
            steps = max(1, num_samples // gbs) if gbs else 1
        if num_samples % steps:
            raise ConfigError(
                f"{num_samples} samples do not split into {steps} optimizer steps; make "
                "rollout_batch_size x n_samples_per_prompt a multiple of --num-steps-per-rollout."
            )
        return steps

    def _reuse_current_as_old(self, steps: int) -> bool:
        # slime's fast path: with one step the old policy *is* the current one, so skip its forward pass.
        loss = self.loss
        return (
            steps == 1
            and not self.actor_config.keep_old_actor
            and self.critic is None
            and loss.advantage_estimator != "gspo"
            and not (loss.kl_coef != 0 and loss.advantage_estimator in _KL_REWARD)
            and not loss.use_opd
            and loss.custom_advantage_function_path is None
            and loss.custom_loss_function_path is None
        )

    def _old_log_probs(self, batch: RolloutBatch, steps: int) -> PerSample | None:
        if self.loss.use_rollout_logprobs:
            lp = rollout_log_probs(batch.samples, mg.device())
            if lp is None:
                raise ConfigError("--use-rollout-logprobs needs rollout_log_probs on every sample.")
            return lp
        if self._reuse_current_as_old(steps):
            return None
        return self.compute_log_probs(batch, model="old_actor" if self.actor_config.keep_old_actor else "actor")

    def _teacher_log_probs(self, batch: RolloutBatch) -> PerSample | None:
        """OPD teacher log-probs: the held teacher's forward (megatron), or the batch's own (sglang)."""
        if not self.loss.use_opd:
            return None
        if self._has_teacher:
            return self.compute_log_probs(batch, model="teacher")
        return teacher_log_probs(batch.samples, mg.device())

    def train(self, rollout_id: int, batch: RolloutBatch) -> Mapping[str, float]:
        """Log-probs, advantages, then `num_steps_per_rollout` optimizer steps; metrics equal on all ranks."""
        start = time.perf_counter()
        self.onload()
        if self.actor_config.reset_optimizer_states:
            self._settle()
            _reset_optimizer_states(self.stack.optimizer)
        samples = batch.samples
        steps = self._num_steps(len(samples))
        ref = self.compute_log_probs(batch, model="ref") if self.need_ref else None
        teacher = self._teacher_log_probs(batch)  # slime's order: ref, teacher, then the old actor
        old = self._old_log_probs(batch, steps)
        values = self.compute_values(batch) if self.critic is not None else None
        advantages, returns = compute_batch_advantages(
            self.loss, batch, old_log_probs=old, ref_log_probs=ref, values=values, teacher_log_probs=teacher
        )
        if self.actor_config.keep_old_actor:
            self.backups.save("old_actor")
        log_prob_time = time.perf_counter() - start
        per_step = [
            self._train_step(samples, ids, advantages, returns, old, ref, values)
            for ids in _step_ids(len(samples), steps)
        ]
        interval = self.actor_config.ref_update_interval
        if interval and self.need_ref and (rollout_id + 1) % interval == 0:
            self.backups.save("ref")
        metrics = {f"train/{k}": sum(m[k] for m in per_step) / len(per_step) for k in per_step[0]}
        metrics |= {"perf/log_probs_time": log_prob_time, "perf/train_time": time.perf_counter() - start}
        if teacher is not None:
            metrics["rollout/opd_reverse_kl"] = opd_reverse_kl(samples, old, teacher)
        for offloader in self._offloaders:
            # colocated: the optimizer state starts home during the weight push; the orchestrator calls `offload`
            # after that push (offloading here would make the push onload everything again)
            offloader.start_offload()
        return metrics

    def _train_step(self, samples, ids, advantages, returns, old, ref, values) -> dict[str, float]:
        chosen = [samples[i] for i in ids]
        inputs = StepInputs(
            advantages=advantages,
            old_log_probs=old,
            ref_log_probs=ref,
            rollout_log_probs=rollout_log_probs(samples, mg.device()),
            old_values=values,
            returns=returns,
            sample_denominators=sample_denominators(samples),
            num_global_tokens=float(max(1, sum(sum(s.loss_mask) for s in chosen))),
            num_global_samples=float(len(chosen)),
        )
        batches = self._batches(samples, ids, train=True)
        metrics: dict[str, float] = {}
        if self.critic is not None:
            critic_metrics = optimizer_step(
                self.critic, batches, HeadSpec(kind="critic"), critic_loss_fn(self.loss, inputs)
            )
            metrics |= {f"critic-{k}": v for k, v in critic_metrics.items()}  # slime: train/critic-value_loss
        head = self._head(with_entropy=self.loss.entropy_coef != 0 or self.actor_config.use_rollout_entropy)
        metrics |= optimizer_step(self.stack, batches, head, actor_loss_fn(self.loss, inputs), self.graphs)
        return metrics

    # ------------------------------------------------------------------------------- checkpoints & weights
    def save_checkpoint(self, rollout_id: int) -> str:
        """Atomically write `<--save>/iter_<rollout_id>` (critic under `<--save>/critic`); returns the directory."""
        if self.args.save is None:
            raise ConfigError("save_checkpoint needs --save.")
        self.onload()
        self._settle()
        kwargs = {"save_optim": not self.args.no_save_optim, "save_rng": not self.args.no_save_rng}
        path = save_torch_dist(self.stack, self.args.save, rollout_id, **kwargs)
        if self.critic is not None:
            save_torch_dist(self.critic, f"{self.args.save}/critic", rollout_id, **kwargs)
        return str(path)

    def export_weight_buckets(self) -> Iterator[list[NamedTensor]]:
        """HF-named full tensors of the actor in buckets of `update_weight_buffer_size` bytes (collective)."""
        self.onload()
        yield from export_buckets(self.stack, self.actor_config.update_weight_buffer_size)

    def export_weights(self) -> Iterator[NamedTensor]:
        """HF-named full tensors of the actor, one bucket materialised at a time (collective)."""
        for bucket in self.export_weight_buckets():
            yield from bucket

    def export_hf(self, out_dir: str) -> str:
        """Write the actor as an HF folder (safetensors + config + tokenizer of `hf_checkpoint`), atomically;
        collective: every rank walks the export, global rank 0 writes."""
        from slime.sync.hf_folder import write_hf_folder

        dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else torch.float32
        writer = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        source = self.actor_config.hf_checkpoint
        return str(write_hf_folder(self.export_weights(), out_dir, hf_checkpoint=source, dtype=dtype, is_writer=writer))

    def _settle(self) -> None:
        """Wait for optimizer state still being restored or copied home (see slime.megatron.offload) before anything
        but the optimizer step reads or writes it."""
        for offloader in self._offloaders:
            offloader.settle()

    def offload(self) -> dict[str, float]:
        """Free accelerator memory of the actor (and critic); returns figures (`perf/offload_*`)."""
        if self.graphs is not None:  # their memory pool is freed, and the restored weights get new addresses
            self.graphs.reset()
        return summed_figures(o.offload() for o in self._offloaders)

    def onload(self) -> dict[str, float]:
        """Bring back what `offload` freed; returns figures (`perf/onload_*`)."""
        return summed_figures(o.onload() for o in self._offloaders)


def _step_ids(num_samples: int, steps: int) -> list[list[int]]:
    size = num_samples // steps
    return [list(range(s * size, (s + 1) * size)) for s in range(steps)]


def _reset_optimizer_states(optimizer) -> None:
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        for state in getattr(opt, "optimizer", opt).state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
                    value.zero_()
