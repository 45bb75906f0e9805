"""`RolloutHost`: the engines + router, the data source and the rollout functions of one run.

slime's RolloutManager without Ray: it starts an `EngineGroup` (SGLang servers on GPU, local
SGLang-protocol servers on CPU) behind the real sglang-router, points `args.sglang_router_ip/port` at it
(the rollout function reaches engines through the router, as in slime), resolves the rollout / eval
functions once, and turns each rollout's scored groups into a `RolloutBatch` plus `rollout/*` metrics. The prompt
data is checked against the model first (`prompt_check`). With `--use-fault-tolerance` it runs the health monitor,
heals the group on request (`fault_tolerance`), and puts the data source back as it was when a rollout fails, so
a rerun serves the same samples.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from slime.train.run_config import RunConfig
from slime.types import ConfigError, ContractError, RolloutBatch, RolloutFn, Sample, resolve

DETERMINISTIC_FLAG = "--sglang-enable-deterministic-inference"


def _alias(path: str) -> str:
    from slime.sglang.rollout import SLIME_PATH_ALIASES

    return SLIME_PATH_ALIASES.get(path, path)


def rollout_metrics(groups: Sequence[Sequence[Sample]], reward_key: str | None) -> dict[str, float]:
    """slime's `rollout/*` basics: reward mean/std, effective response length, truncation, zero-std groups."""
    samples = [s for g in groups for s in g]
    rewards = [s.get_reward_value(reward_key) for s in samples]
    lengths = [s.effective_response_length for s in samples]
    zero_std = sum(1 for g in groups if len({s.get_reward_value(reward_key) for s in g}) == 1)
    return {
        "rollout/reward_mean": statistics.fmean(rewards),
        "rollout/reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "rollout/response_len_mean": statistics.fmean(lengths),
        "rollout/response_len_max": float(max(lengths)),
        "rollout/truncated_ratio": sum(s.status == Sample.Status.TRUNCATED for s in samples) / len(samples),
        "rollout/zero_std_group_frac": zero_std / len(groups),
        "rollout/num_samples": float(len(samples)),
    }


class RolloutHost:
    """Engines, router, data and rollout functions of one run."""

    def __init__(self, config: RunConfig) -> None:
        from slime.sglang.engine_group import EngineGroup
        from slime.train.fault_tolerance import GroupHealer, HealthMonitor
        from slime.train.prompt_check import checked_data_source

        if config.engines is None:
            raise ConfigError("this run has no engines (--debug-train-only or --rollout-external-engine-addrs).")
        args = config.args
        self.args = argparse.Namespace(**vars(args))  # the rollout functions' view: the router's address is set below
        # slime's rollout reads this SGLang flag to send per-sample seeds (`sampling_seed`).
        self.args.sglang_enable_deterministic_inference = DETERMINISTIC_FLAG in getattr(args, "sglang_passthrough", ())
        self.rollout_fn: Any = resolve(_alias(args.rollout_function_path), RolloutFn, flag="--rollout-function-path")
        self.eval_fn: Any = resolve(_alias(args.eval_function_path), RolloutFn, flag="--eval-function-path")
        self.data_source = checked_data_source(self.args)
        self.group = EngineGroup(config.engines)
        self.group.start()
        router = urlparse(self.group.router_url)
        self.args.sglang_router_ip, self.args.sglang_router_port = router.hostname, router.port
        self.healer = GroupHealer(self.group)
        self.monitor = HealthMonitor.from_args(self.healer, self.args).start() if args.use_fault_tolerance else None

    def engine_urls(self) -> list[str]:
        """URLs of the live engines (weight updates go to each directly)."""
        return list(self.group.engine_urls)

    def num_rollout_per_epoch(self) -> int:
        """Rollouts in one pass over the prompt data (slime: len(dataset) // rollout_batch_size)."""
        return max(1, len(self.data_source) // self.args.rollout_batch_size)

    def heal(self) -> dict[str, Any]:
        """Restart a dead router and replace dead engines (`--use-fault-tolerance`); returns what changed.

        Replacements hold the checkpoint's weights until the trainer's next push, which the loop makes at once.
        """
        from slime.sglang.rollout import shutdown_rollout_runtimes

        done = self.healer.heal()
        if done.get("router_restarted"):
            shutdown_rollout_runtimes()  # pooled connections to the old router are dead; the next rollout reconnects
        return done

    def generate(self, rollout_id: int) -> tuple[RolloutBatch, dict[str, float]]:
        """Run the rollout function; return the training batch and `rollout/*` metrics.

        With `--use-fault-tolerance`, a failing rollout first puts the data source back as it was (the samples it
        had taken, the partial-rollout buffer), so a rerun serves exactly the same samples.
        """
        if not self.args.use_fault_tolerance:
            return self._generate(rollout_id)
        before = self.data_source.state_dict()
        try:
            return self._generate(rollout_id)
        except BaseException:
            self.data_source.load_state_dict(before)
            raise

    def _generate(self, rollout_id: int) -> tuple[RolloutBatch, dict[str, float]]:
        from slime.sglang.rollout import apply_reward_post_process
        from slime.train.prompt_check import skipped_rows

        groups = self.rollout_fn(self.args, rollout_id, self.data_source)
        if not isinstance(groups, list) or not groups:
            raise ContractError(f"--rollout-function-path returned {type(groups).__name__}, not list[list[Sample]].")
        # The post-process's rewards replace the group baseline (slime); OPD's teacher log-probs land here too.
        scores = apply_reward_post_process(self.args, groups)
        metrics = rollout_metrics(groups, self.args.reward_key)
        metrics.update(getattr(groups, "metrics", {}))
        if skipped_rows(self.data_source):
            metrics["rollout/skipped_prompt_rows"] = float(skipped_rows(self.data_source))
        return RolloutBatch.from_groups(rollout_id, groups, self.args.reward_key, scores), metrics

    def progress(self) -> dict[str, int]:
        """Counters of the running rollout (read-only; safe beside `generate`)."""
        from slime.sglang.rollout.progress import ROLLOUT_PROGRESS

        return ROLLOUT_PROGRESS.snapshot()

    def evaluate(self, rollout_id: int) -> dict[str, float]:
        """Run the eval function; return its `eval/*` metrics."""
        result = self.eval_fn(self.args, rollout_id, self.data_source, evaluation=True)
        return {k: float(v) for k, v in getattr(result, "metrics", {}).items()}

    def _control(self, method: str, *args: Any) -> None:
        from slime.sglang.client import EngineClient

        async def call() -> None:
            # A client per call: its session belongs to this short-lived event loop.
            async with EngineClient(self.group.router_url, worker_urls=self.engine_urls()) as client:
                await getattr(client, method)(*args)

        asyncio.run(call())

    def release_memory(self) -> None:
        """Engines drop weights / KV cache memory while the trainer runs (colocate)."""
        if self.monitor is not None:
            self.monitor.pause()  # a released engine cannot answer /health_generate
        self._control("release_memory_occupation")

    def resume_memory(self, tags: Sequence[str] | None = None) -> None:
        """Engines take back the memory of `tags` (SGLang's "weights", "kv_cache", "cuda_graph"; None: all). Health
        probes resume once the KV cache is back, since an engine cannot generate without it."""
        self._control("resume_memory_occupation", None if tags is None else list(tags))
        if self.monitor is not None and (tags is None or "kv_cache" in tags):
            self.monitor.resume()

    def weights_incoming(self, incoming: bool) -> None:
        """The trainer starts (True) or finished (False) pushing weights: no health probes meanwhile, since an engine
        that pauses generation for the update would fail them."""
        if self.monitor is not None:
            (self.monitor.pause if incoming else self.monitor.resume)("weights")

    def state_dict(self) -> dict[str, Any]:
        """The data source's state, the partial-rollout buffer included."""
        return self.data_source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.data_source.load_state_dict(state)

    def shutdown(self) -> None:
        """Stop engines and router; close the rollout event loop."""
        from slime.sglang.rollout import shutdown_rollout_runtimes

        try:
            if self.monitor is not None:
                self.monitor.stop()
            shutdown_rollout_runtimes()
        finally:
            self.group.shutdown()  # whatever failed above, no engine or router outlives the run
