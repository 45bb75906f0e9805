"""What the test worlds run. Each scenario returns a dict of plain tensors/numbers; the tests assert on it.

A scenario runs several checks on one model build (megatron import and model build dominate the cost on CPU).
Each check records its own outcome, so one failing check leaves the others' results readable; a check's
exception is stored as `{"error": traceback}` under its name.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from batches import random_batch
from fused import fused_elementwise  # noqa: F401  (a scenario the worker looks up here)

from slime.megatron import ActorConfig, parse_megatron_args
from slime.types import PolicyTrainer


def _check(result: dict, name: str, fn: Callable[[], Any]) -> None:
    try:
        result[name] = fn()
    except Exception:  # recorded for the test to report; the scenario goes on
        result[name] = {"error": traceback.format_exc()}


def _policy(model_dir: str, argv: list[str], loss=None, **actor: Any):
    from slime.megatron.policy import MegatronPolicy

    ns, rest = parse_megatron_args(argv)
    assert not rest, rest
    ns.bf16 = False  # fp32: parity with HF must be tight
    config = ActorConfig(hf_checkpoint=model_dir, data_pad_size_multiplier=8, **actor)
    return MegatronPolicy(ns, config, loss)


def _export(policy) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu().clone() for name, t in policy.export_weights()}


def _export_paths(policy) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """The package's PP-free export walk and mbridge's own, on the trained weights (names in order, tensors)."""
    bridge, modules = policy.stack.bridge, policy.stack.modules
    ours = [(n, t.detach().cpu().clone()) for n, t in bridge.export_hf_weights(modules)]
    theirs = [(n, t.detach().cpu().clone()) for n, t in bridge._bridge.export_weights(modules)]
    return {"ours": ours, "mbridge": theirs}


def _raw_logits(policy, batch) -> dict[str, Any]:
    """Full-vocab logits of the packed batch (gathered over TP) and the packing, for the HF comparison."""
    from megatron.core.models.common.embeddings import rope_utils
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from slime.megatron.packing import PackedMicroBatch

    mb = PackedMicroBatch.build(batch.samples, range(len(batch.samples)), pad_multiple=8, device=torch.device("cpu"))
    module = policy.stack.modules[0]
    module.eval()
    # Megatron's per-sequence THD rotation must not run: slime.megatron.packed_rope rotates packed rows in one pass.
    megatron_thd, thd_calls = rope_utils._apply_rotary_pos_emb_thd, []
    rope_utils._apply_rotary_pos_emb_thd = lambda *a, **k: thd_calls.append(1) or megatron_thd(*a, **k)
    try:
        with torch.no_grad():
            out = module(
                input_ids=mb.tokens,
                position_ids=mb.position_ids,
                attention_mask=None,
                packed_seq_params=mb.packed_seq_params,
            )
    finally:
        rope_utils._apply_rotary_pos_emb_thd = megatron_thd
    module.train()
    full = gather_from_tensor_model_parallel_region(out)[0]
    logits = full[:, : policy.stack.bridge.vocab_size].clone()
    return {"logits": logits, "cu_seqlens": mb.cu_seqlens, "megatron_thd_rope_calls": len(thd_calls)}


def _static_row_logits(policy, batch) -> dict[str, Any]:
    """The row the CUDA graphs capture (`slime.megatron.cuda_graphs`: padded to a fixed token count, `cu_seqlens`
    padded with empty sequences, a constant `max_seqlen`; the model up to its final norm), run eagerly here, then the
    output layer as the graphs' caller runs it (`response_rows.output_on_rows`): logits of the real tokens, gathered.
    Under sequence parallelism the hidden states are split by sequence and the output layer gathers them itself."""
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from slime.megatron.cuda_graphs import StaticRowModel, sequence_slots, static_row
    from slime.megatron.packing import PackedMicroBatch
    from slime.megatron.response_rows import gpt_model, output_on_rows

    mb = PackedMicroBatch.build(batch.samples, range(len(batch.samples)), pad_multiple=8, device=torch.device("cpu"))
    tokens = mb.tokens.size(1) + 40  # 40 more padding tokens, one more padding sequence
    gpt = gpt_model(policy.stack.models[0])
    out = {}
    for slots in (sequence_slots(mb.cu_seqlens.numel()), 64):
        row = static_row(mb, tokens, slots)
        module = StaticRowModel(policy.stack.models[0], tokens).eval()
        with torch.no_grad():
            hidden = module(*row)
            if gpt.config.sequence_parallel:
                tied = gpt.shared_embedding_or_output_weight() if gpt.share_embeddings_and_output_weights else None
                logits = gpt.output_layer(hidden.transpose(0, 1), weight=tied)[0]
                logits = logits.transpose(0, 1)
            else:
                logits = output_on_rows(gpt, hidden[0])
            logits = gather_from_tensor_model_parallel_region(logits)[0]
        module.train()
        out[slots] = {"logits": logits[: mb.num_tokens, : policy.stack.bridge.vocab_size].clone(), "row": row}
        out[slots]["hidden_shape"] = tuple(hidden.shape)
    return out


def _fusions_ab(policy, batch) -> dict[str, Any]:
    """The same step (from the saved checkpoint) with the defaults, logits for response rows only
    (`slime.megatron.response_rows`) and the gradient-accumulation fusion (`slime.megatron.wgrad_fusion`), and with
    both switched off here: full logits then row selection, Megatron's own linears. Log-probs, metrics and the update
    must agree; the fused run must have taken the fused path."""
    from slime.megatron import response_rows, wgrad_fusion

    applies, fusable, accumulate = response_rows.applies, wgrad_fusion._fusable, wgrad_fusion.accumulate_wgrad
    runs: dict[str, Any] = {}
    for name in ("fused", "plain"):
        calls = []
        wgrad_fusion.accumulate_wgrad = lambda *a, _calls=calls: _calls.append(1) or accumulate(*a)
        if name == "plain":
            response_rows.applies = lambda gpt: False
            wgrad_fusion._fusable = lambda weight, kwargs: False
        try:
            policy.load(policy.args.save)
            log_probs = policy.compute_log_probs(batch, model="actor")
            metrics = dict(policy.train(3, batch))
            runs[name] = {"log_probs": log_probs, "metrics": metrics, "weights": _export(policy)}
            head = response_rows.gpt_model(policy.stack.models[0]).output_layer
            runs[name]["output_layer"] = type(head).__name__
            runs[name] |= {
                "accumulate_calls": len(calls),
                "rows_first": response_rows.applies(response_rows.gpt_model(policy.stack.models[0])),
            }
        finally:
            response_rows.applies, wgrad_fusion._fusable, wgrad_fusion.accumulate_wgrad = applies, fusable, accumulate
    return runs


def _vocab_parallel_vs_single(policy) -> dict[str, float]:
    """vocab_parallel_log_probs over this TP group vs slime.loss on the gathered logits (values and grads)."""
    from megatron.core import parallel_state as mpu

    from slime.loss import log_probs_and_entropy_from_logits
    from slime.megatron.vocab_parallel import vocab_parallel_log_probs

    tp, rank = mpu.get_tensor_model_parallel_world_size(), mpu.get_tensor_model_parallel_rank()
    gen = torch.Generator().manual_seed(7)
    vocab, padded, rows = 250, 256, 37  # 6 padding columns, as Megatron pads the vocabulary
    full = torch.randn(rows, padded, generator=gen, dtype=torch.float64) * 3
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    w_lp, w_ent = (
        torch.randn(rows, generator=gen, dtype=torch.float64),
        torch.randn(rows, generator=gen, dtype=torch.float64),
    )
    width = padded // tp
    local = full[:, rank * width : (rank + 1) * width].clone().requires_grad_(True)
    lp, ent = vocab_parallel_log_probs(
        local,
        targets,
        vocab_start=rank * width,
        vocab_size=vocab,
        temperature=0.7,
        group=mpu.get_tensor_model_parallel_group() if tp > 1 else None,
        chunk_size=5,
        with_entropy=True,
    )
    ((lp * w_lp).sum() + (ent * w_ent).sum()).backward()
    ref_in = full[:, :vocab].clone().requires_grad_(True)
    ref_lp, ref_ent = log_probs_and_entropy_from_logits(ref_in, targets, temperature=0.7)
    ((ref_lp * w_lp).sum() + (ref_ent * w_ent).sum()).backward()
    ref_grad = torch.nn.functional.pad(ref_in.grad, (0, padded - vocab))[:, rank * width : (rank + 1) * width]
    return {
        "log_prob": (lp - ref_lp).abs().max().item(),
        "entropy": (ent - ref_ent).abs().max().item(),
        "grad": (local.grad - ref_grad).abs().max().item(),
    }


def suite(
    *, out_dir: Path, model_dir: str, tp: int, sequence_parallel: bool = False, repo_root: str | None = None
) -> dict[str, Any]:
    """The main TP1 / TP2 checks on one actor with a KL loss (so a reference model is held).

    The TP2 world then re-lays its two processes out as TP1 x DP2 and as PP2 for the same first step.

    With `repo_root` (the TP1 world) it goes on with `fallback_and_critic` and the GPU recipe's CPU path in the
    same process: each world pays megatron's import once.
    """
    from slime.loss import LossConfig

    # adam_eps 1e-4: Adam's first step divides by |g|, which would turn float32 summation noise on near-zero gradients
    # into visible weight differences between layouts (TP2 vs DP2); a larger eps keeps those comparisons tight.
    argv = f"--tensor-model-parallel-size {tp} --lr 1e-3 --adam-eps 1e-4 --micro-batch-size 3".split()
    argv += ["--save", str(out_dir / "ckpt")] + (["--sequence-parallel"] if sequence_parallel else [])
    policy = _policy(model_dir, argv, LossConfig(use_kl_loss=True, kl_loss_coef=0.1, entropy_coef=0.01))
    batch = random_batch(8, seed=1)
    result: dict[str, Any] = {"world_size": dist.get_world_size(), "batch": batch}
    _check(result, "logits", lambda: _raw_logits(policy, batch))
    _check(result, "static_row", lambda: _static_row_logits(policy, batch))
    _check(result, "vocab_parallel", lambda: _vocab_parallel_vs_single(policy))
    _check(result, "export_initial", lambda: _export(policy))
    _check(result, "log_probs", lambda: {m: policy.compute_log_probs(batch, model=m) for m in ("actor", "ref")})
    _check(result, "is_policy_trainer", lambda: isinstance(policy, PolicyTrainer))
    _check(result, "first_step", lambda: dict(policy.train(0, batch)))
    _check(result, "after_first_step", lambda: _export(policy))
    _check(result, "export_paths", lambda: _export_paths(policy))
    _check(result, "checkpoint", lambda: _checkpoint_round_trip(policy, batch))
    _check(result, "micro_batch_invariance", lambda: _micro_batch_invariance(policy, batch))
    _check(result, "fusions_ab", lambda: _fusions_ab(policy, batch))
    _check(result, "offload", lambda: _offload_round_trip(policy, batch))
    _check(result, "sync_publish", lambda: _publish_through_slime_sync(policy))
    if tp == 2:
        result["dp2"] = _data_parallel_phase(model_dir, out_dir, batch)
        result["pp2"] = _pipeline_phase(model_dir, batch)
    if repo_root is not None:
        result |= fallback_and_critic(out_dir=out_dir, model_dir=model_dir, ckpt_root=str(out_dir / "ckpt"))
        result["recipe"] = gpu_recipe_cpu_path(out_dir=out_dir / "recipe", repo_root=repo_root)
    return result


def _data_parallel_phase(model_dir: str, out_dir: Path, batch) -> dict[str, Any]:
    """The same two processes re-laid out as TP1 x DP2: the first step again, and the TP2 checkpoint resharded."""
    from slime.loss import LossConfig
    from slime.megatron import _megatron_globals

    _megatron_globals.reset_model_parallel()
    result: dict[str, Any] = {}
    argv = ["--lr", "1e-3", "--adam-eps", "1e-4", "--micro-batch-size", "3"]
    policy = _policy(model_dir, argv, LossConfig(use_kl_loss=True, kl_loss_coef=0.1, entropy_coef=0.01))
    _check(result, "first_step", lambda: dict(policy.train(0, batch)))
    _check(result, "after_first_step", lambda: _export(policy))

    def resharded():
        policy.load(str(out_dir / "ckpt"), load_optim=False)  # saved at TP2: the model part reshards
        return _export(policy)

    _check(result, "resharded", resharded)
    return result


def _checkpoint_round_trip(policy, batch) -> dict[str, Any]:
    path = policy.save_checkpoint(1)
    saved = _export(policy)
    policy.train(2, random_batch(8, seed=2))  # move the weights and the optimizer state away
    moved = _export(policy)
    iteration = policy.load(policy.args.save)
    restored = _export(policy)
    return {
        "path": path,
        "iteration": iteration,
        "saved": saved,
        "moved": moved,
        "restored": restored,
        "files": sorted(p.name for p in Path(path).iterdir()),
    }


def _micro_batch_invariance(policy, batch) -> dict[str, Any]:
    """Same start (the checkpoint, optimizer included), one step with 1 vs several micro-batches."""
    args = policy.args
    runs = {}
    for name, mbs, dynamic in (("one", 8, None), ("fixed3", 3, None), ("dynamic", None, 40)):
        policy.load(args.save)
        args.micro_batch_size = mbs
        policy.actor_config = dataclasses.replace(
            policy.actor_config, use_dynamic_batch_size=dynamic is not None, max_tokens_per_gpu=dynamic
        )
        metrics = dict(policy.train(3, batch))
        runs[name] = {"weights": _export(policy), "metrics": metrics}
    args.micro_batch_size = 3
    policy.actor_config = dataclasses.replace(
        policy.actor_config, use_dynamic_batch_size=False, max_tokens_per_gpu=None
    )
    return runs


def _publish_through_slime_sync(policy) -> dict[str, Any]:
    """`export_weights` straight into slime.sync's colocated (shared-memory) sender and an in-process receiver."""
    from slime.sync import SharedMemoryReceiver, SharedMemorySender

    received: dict[str, torch.Tensor] = {}
    receiver = SharedMemoryReceiver(lambda named: received.update({n: t.clone() for n, t in named}))
    sender = SharedMemorySender(receiver.apply, bucket_bytes=64 * 1024)  # several buckets for the tiny model
    if dist.get_rank() == 0:
        stats = sender.publish(policy.export_weights(), version=1)
    else:  # the export is collective: the other ranks take part without sending
        stats = {}
        for _ in policy.export_weights():
            pass
    sender.close()
    return {"received": received, "exported": _export(policy), "stats": stats, "version": receiver.version}


def _offload_round_trip(policy, batch) -> dict[str, Any]:
    from slime.megatron.offload import _optimizer_tensors

    before = policy.compute_log_probs(batch)
    state = list(_optimizer_tensors(policy.stack.optimizer))  # fp32 main weights and Adam moments (own stash)
    state_before = [t.detach().clone() for t in state]
    figures = policy.offload()
    freed = all(p.untyped_storage().nbytes() == 0 for p in policy.stack.modules[0].parameters())
    state_freed = bool(state) and all(t.untyped_storage().nbytes() == 0 for t in state)
    onload = policy.onload()
    state_back = all(torch.equal(t, b) for t, b in zip(state, state_before, strict=True))
    after = policy.compute_log_probs(batch)
    metrics = dict(policy.train(4, batch))
    # the orchestrator offloads after the weight push; train() itself leaves everything in place
    kept = all(p.untyped_storage().nbytes() > 0 for p in policy.stack.modules[0].parameters())
    # Adam's 0-dim step counters live on the CPU even on a GPU; one in the stash stopped the early copies there
    inner = [o.optimizer for o in getattr(policy.stack.optimizer, "chained_optimizers", [policy.stack.optimizer])]
    counters = [v for o in inner for st in o.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() == 0]
    stashed_counter = any(t.dim() == 0 for t in _optimizer_tensors(policy.stack.optimizer))
    return {"before": before, "after": after, "freed": freed, "figures": figures, "train_after": metrics,
            "state_freed": state_freed, "state_back": state_back, "onload": onload,
            "kept_after_train": kept, "counters": len(counters), "stashed_counter": stashed_counter}  # fmt: skip


def fallback_and_critic(*, out_dir: Path, model_dir: str, ckpt_root: str) -> dict[str, Any]:
    """`--load` without a checkpoint falls back to `--ref-load`; `--load` resumes; recompute; the PPO critic."""
    from slime.loss import LossConfig

    result: dict[str, Any] = {}

    def fallback():
        missing = str(out_dir / "no_such_run")
        policy = _policy(model_dir, ["--load", missing, "--micro-batch-size", "4"], ref_load=ckpt_root)
        return {"weights": _export(policy), "start": policy.start_rollout_id}

    def critic():
        policy = _policy(
            model_dir,
            ["--micro-batch-size", "4", "--lr", "1e-3"],
            LossConfig(advantage_estimator="ppo", gamma=1.0, lambd=1.0),
        )
        batch = random_batch(8, seed=3)
        before = policy.compute_values(batch)
        metrics = dict(policy.train(0, batch))
        after = policy.compute_values(batch)
        return {"before": before, "after": after, "metrics": metrics}

    def resume():
        policy = _policy(model_dir, ["--load", ckpt_root, "--micro-batch-size", "4"])
        return {"weights": _export(policy), "start": policy.start_rollout_id}

    def fresh_save():
        # A never-stepped optimizer (what an HF -> torch_dist conversion saves) must save and load.
        policy = _policy(model_dir, ["--save", str(out_dir / "fresh"), "--micro-batch-size", "4"])
        path = policy.save_checkpoint(0)
        iteration = policy.load(str(out_dir / "fresh"))
        return {"path": path, "iteration": iteration, "weights": _export(policy)}

    def recompute():
        # Full activation recomputation must not change the step: same metrics as `suite`'s first step.
        argv = "--lr 1e-3 --adam-eps 1e-4 --micro-batch-size 3 --recompute-granularity full "
        argv += "--recompute-method uniform --recompute-num-layers 1"
        policy = _policy(model_dir, argv.split(), LossConfig(use_kl_loss=True, kl_loss_coef=0.1, entropy_coef=0.01))
        assert policy.stack.config.recompute_granularity == "full"
        return dict(policy.train(0, random_batch(8, seed=1)))

    def recompute_selective():
        # Selective recomputation re-runs the core attention, which also applies the packed RoPE: same step again.
        argv = "--lr 1e-3 --adam-eps 1e-4 --micro-batch-size 3 --recompute-granularity selective"
        policy = _policy(model_dir, argv.split(), LossConfig(use_kl_loss=True, kl_loss_coef=0.1, entropy_coef=0.01))
        from slime.megatron.packed_rope import PackedRopeSelfAttention

        attention = policy.stack.modules[0].decoder.layers[0].self_attention
        assert isinstance(attention, PackedRopeSelfAttention) and attention.checkpoint_core_attention
        return dict(policy.train(0, random_batch(8, seed=1)))

    _check(result, "fallback", fallback)
    _check(result, "resume", resume)
    _check(result, "fresh_save", fresh_save)
    _check(result, "recompute", recompute)
    _check(result, "recompute_selective", recompute_selective)
    _check(result, "critic", critic)
    _check(result, "opd", lambda: opd_teachers(model_dir=model_dir, teacher_root=ckpt_root))
    return result


def opd_teachers(*, model_dir: str, teacher_root: str) -> dict[str, Any]:
    """On-policy distillation: a megatron teacher (a torch_dist checkpoint held in host memory and swapped in),
    then an sglang-type teacher whose log-probs come with the batch (the megatron teacher's, so both must agree)."""
    from slime.loss import LossConfig
    from slime.types import ConfigError, RolloutBatch

    argv = ["--micro-batch-size", "4", "--lr", "1e-3", "--adam-eps", "1e-4"]
    loss = LossConfig(use_opd=True, opd_kl_coef=0.5)
    batch = random_batch(8, seed=4)
    held = _policy(model_dir, argv, loss, opd_type="megatron", opd_teacher_load=teacher_root)
    start = _export(held)
    actor, teacher = held.compute_log_probs(batch), held.compute_log_probs(batch, model="teacher")
    after_swap = _export(held)
    megatron_metrics = dict(held.train(0, batch))
    reference = _policy(model_dir, ["--load", teacher_root, *argv]).compute_log_probs(batch)
    with_teacher = [
        dataclasses.replace(s, teacher_log_probs=tuple(t.tolist())) for s, t in zip(batch.samples, teacher, strict=True)
    ]
    carried = RolloutBatch(rollout_id=0, samples=tuple(with_teacher), n_samples_per_prompt=batch.n_samples_per_prompt)
    from_batch = _policy(model_dir, argv, loss, opd_type="sglang")
    sglang_metrics = dict(from_batch.train(0, carried))
    try:
        from_batch.train(1, batch)
        missing = "no error"
    except ConfigError as exc:
        missing = str(exc)
    return {
        "batch": batch, "start": start, "after_swap": after_swap, "actor": actor, "teacher": teacher,
        "reference": reference, "megatron": megatron_metrics, "sglang": sglang_metrics, "missing": missing,
    }  # fmt: skip


def gpu_recipe_cpu_path(*, out_dir: Path, repo_root: str) -> dict[str, Any]:
    """ci/gpu/megatron/bench_megatron_gpu.py on the CPU (tiny shape): checkpoint, train, logits save + compare."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_megatron_gpu", f"{repo_root}/ci/gpu/megatron/bench_megatron_gpu.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ckpt, logits = str(out_dir / "hf"), str(out_dir / "logits_tp1.pt")
    common = ["--device", "cpu", "--model", "tiny", "--checkpoint", ckpt, "--pad-multiplier", "8", "--fp32"]
    result: dict[str, Any] = {}
    _check(
        result, "checkpoint", lambda: bench.main(["checkpoint", "--device", "cpu", "--model", "tiny", "--save", ckpt])
    )
    train = ["--samples", "8", "--seq-len", "24", "--max-tokens", "64", "--warmup", "1", "--repeats", "2"]
    profile = ["--profile", str(out_dir / "profile.txt")]
    _check(result, "train", lambda: bench.main(["train", *common, *train, *profile]))
    _check(result, "logits_save", lambda: bench.main(["logits", *common, "--seq-len", "16", "--save", logits]))
    _check(result, "logits_compare", lambda: bench.main(["logits", *common, "--seq-len", "16", "--compare", logits]))
    return result


def _pipeline_phase(model_dir: str, batch) -> dict[str, Any]:
    """The same two processes re-laid out as PP2: log-probs, the first step and the export."""
    from slime.loss import LossConfig
    from slime.megatron import _megatron_globals

    _megatron_globals.reset_model_parallel()
    result: dict[str, Any] = {}
    argv = "--pipeline-model-parallel-size 2 --lr 1e-3 --adam-eps 1e-4 --micro-batch-size 3".split()
    policy = _policy(model_dir, argv, LossConfig(use_kl_loss=True, kl_loss_coef=0.1, entropy_coef=0.01))
    _check(result, "export_initial", lambda: _export(policy))
    _check(result, "log_probs", lambda: policy.compute_log_probs(batch))
    _check(result, "first_step", lambda: dict(policy.train(0, batch)))
    _check(result, "after_first_step", lambda: _export(policy))
    return result
