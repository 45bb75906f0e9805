"""Training behaviour of `MegatronPolicy` on real megatron-core (gloo; TP=1 and TP=2 with sequence parallelism)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from slime_megatron_testsupport.results import max_abs_diff, ok

pytestmark = pytest.mark.slow


def test_first_step_actor_equals_ref_and_kl_is_zero(suite: dict) -> None:
    log_probs = ok(suite, "log_probs")
    for actor, ref in zip(log_probs["actor"], log_probs["ref"], strict=True):
        assert torch.equal(actor, ref)
    metrics = ok(suite, "first_step")
    assert metrics["train/kl_loss"] == 0.0
    assert metrics["train/ppo_kl"] == 0.0
    assert metrics["train/pg_clipfrac"] == 0.0
    assert metrics["train/grad_norm"] > 0


def test_torch_dist_save_load_round_trip(suite: dict) -> None:
    result = ok(suite, "checkpoint")
    path = Path(result["path"])
    assert path.name == "iter_0000001" and result["iteration"] == 1
    assert (path.parent / "latest_checkpointed_iteration.txt").read_text() == "1"
    assert "metadata.json" in result["files"] and any(f.endswith(".distcp") for f in result["files"])
    assert max_abs_diff(result["saved"], result["moved"]) > 1e-5  # training in between changed the weights
    assert max_abs_diff(result["saved"], result["restored"]) == 0.0


def test_update_does_not_depend_on_micro_batching(suite: dict) -> None:
    runs = ok(suite, "micro_batch_invariance")
    start = ok(suite, "checkpoint")["saved"]
    step = max_abs_diff(runs["one"]["weights"], start)
    assert step > 1e-5
    for name in ("fixed3", "dynamic"):
        # one micro-batch vs three fixed / token-packed ones: same update up to float32 summation order
        assert max_abs_diff(runs[name]["weights"], runs["one"]["weights"]) < 1e-3 * step, name
        for key in ("train/loss", "train/kl_loss", "train/grad_norm"):
            assert runs[name]["metrics"][key] == pytest.approx(runs["one"]["metrics"][key], rel=1e-5, abs=1e-8)


def test_response_row_logits_and_wgrad_fusion_keep_the_step(suite: dict) -> None:
    runs = ok(suite, "fusions_ab")
    fused, plain = runs["fused"], runs["plain"]
    # the fused run took the fused paths: every linear of the tiny model's layers at TP1; at TP2 + sequence
    # parallelism only the row-parallel ones (the column-parallel ones gather their input), and all logits
    assert fused["accumulate_calls"] > 0 and plain["accumulate_calls"] == 0
    assert fused["rows_first"] is (suite["world_size"] == 1) and plain["rows_first"] is False
    assert fused["output_layer"] == "FusedWgradColumnParallelLinear"  # the tiny model's own (untied) output weight
    for ours, theirs in zip(fused["log_probs"], plain["log_probs"], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    step = max_abs_diff(plain["weights"], ok(suite, "checkpoint")["saved"])
    assert step > 1e-5
    assert max_abs_diff(fused["weights"], plain["weights"]) < 1e-3 * step
    for key in ("train/loss", "train/kl_loss", "train/grad_norm"):
        assert fused["metrics"][key] == pytest.approx(plain["metrics"][key], rel=1e-5, abs=1e-8)


def test_offload_frees_and_onload_restores(suite: dict) -> None:
    result = ok(suite, "offload")
    assert result["freed"]
    assert result["figures"]["perf/offload_bytes"] > 0
    for before, after in zip(result["before"], result["after"], strict=True):
        assert torch.equal(before, after)
    assert result["train_after"]["train/grad_norm"] > 0
    # the optimizer state (its own stash, restored behind the next forward/backward on a GPU) left and came back
    assert result["state_freed"] and result["state_back"]
    assert result["onload"]["perf/onload_behind_bytes"] == 0  # the CPU restores at once: nothing left in flight
    assert result["kept_after_train"]  # a colocated push right after train() must not find the weights offloaded
    assert result["counters"] > 0 and not result["stashed_counter"]  # step counters stay out of the stash
    figures = result["figures"]  # where the offload's time went (HostStash.timings), as the colocated loop logs it
    assert {"perf/offload_copy_time", "perf/offload_free_time", "perf/offload_wait_behind_time"} <= set(figures)
    assert figures["perf/offload_behind_bytes"] == 0  # on the CPU nothing is copied early


def test_load_without_checkpoint_falls_back_to_ref_load(tp1_suite: dict) -> None:
    result = ok(tp1_suite, "fallback")
    assert result["start"] == 0  # a fallback is a fresh start, not a resume
    saved = ok(tp1_suite, "checkpoint")["restored"]  # the tracker's iteration, as loaded by the TP1 suite
    assert max_abs_diff(result["weights"], saved) == 0.0


def test_ppo_critic_trains(tp1_suite: dict) -> None:
    result = ok(tp1_suite, "critic")
    assert [v.shape for v in result["before"]] == [v.shape for v in result["after"]]
    assert result["metrics"]["train/critic-value_loss"] > 0
    assert result["metrics"]["train/critic-grad_norm"] > 0
    moved = max((a - b).abs().max().item() for a, b in zip(result["before"], result["after"], strict=True))
    assert moved > 0


def test_policy_implements_the_trainer_protocol(suite: dict) -> None:
    assert ok(suite, "is_policy_trainer") is True


def test_data_parallel_two_ranks_match_tensor_parallel(tp2_suite: dict) -> None:
    dp2 = tp2_suite["dp2"]
    tp_metrics, dp_metrics = ok(tp2_suite, "first_step"), ok(dp2, "first_step")
    for key in ("train/loss", "train/kl_loss", "train/grad_norm", "train/entropy_loss"):
        assert dp_metrics[key] == pytest.approx(tp_metrics[key], rel=1e-5, abs=1e-8), key
    start = ok(tp2_suite, "export_initial")
    step = max_abs_diff(ok(tp2_suite, "after_first_step"), start)
    assert max_abs_diff(ok(dp2, "after_first_step"), ok(tp2_suite, "after_first_step")) < 1e-3 * step


def test_torch_dist_checkpoint_reshards_from_tp2_to_dp2(tp2_suite: dict) -> None:
    assert max_abs_diff(ok(tp2_suite["dp2"], "resharded"), ok(tp2_suite, "checkpoint")["saved"]) == 0.0


def test_pipeline_parallel_two_stages_match(tp1_suite: dict, tp2_suite: dict, tiny_qwen3_dir: Path) -> None:
    from safetensors.torch import load_file

    pp2 = tp2_suite["pp2"]
    assert max_abs_diff(ok(pp2, "export_initial"), load_file(tiny_qwen3_dir / "model.safetensors")) == 0.0
    for a, b in zip(ok(pp2, "log_probs"), ok(tp1_suite, "log_probs")["actor"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    for key in ("train/loss", "train/kl_loss", "train/grad_norm"):
        assert ok(pp2, "first_step")[key] == pytest.approx(ok(tp2_suite, "first_step")[key], rel=1e-5, abs=1e-8)
    step = max_abs_diff(ok(tp2_suite, "after_first_step"), ok(tp2_suite, "export_initial"))
    assert max_abs_diff(ok(pp2, "after_first_step"), ok(tp2_suite, "after_first_step")) < 1e-3 * step


def test_export_feeds_slime_sync(suite: dict) -> None:
    result = ok(suite, "sync_publish")
    assert result["version"] == 1 and result["stats"]["num_buckets"] > 1
    assert max_abs_diff(result["received"], result["exported"]) == 0.0


def test_load_resumes_from_the_tracker_iteration(tp1_suite: dict) -> None:
    result = ok(tp1_suite, "resume")
    assert result["start"] == 2  # the checkpoint of rollout 1: training resumes at rollout 2
    assert max_abs_diff(result["weights"], ok(tp1_suite, "checkpoint")["saved"]) == 0.0


@pytest.mark.parametrize("mode", ["recompute", "recompute_selective"])
def test_recompute_flags_reach_megatron_and_keep_the_step(tp1_suite: dict, mode: str) -> None:
    recompute, plain = ok(tp1_suite, mode), ok(tp1_suite, "first_step")
    for key in ("train/loss", "train/kl_loss", "train/grad_norm", "train/entropy_loss"):
        assert recompute[key] == pytest.approx(plain[key], rel=1e-6, abs=1e-9), key


def test_checkpoint_of_a_never_stepped_optimizer(tp1_suite: dict, tiny_qwen3_dir: Path) -> None:
    from safetensors.torch import load_file

    result = ok(tp1_suite, "fresh_save")
    assert Path(result["path"]).name == "iter_0000000" and result["iteration"] == 0
    assert max_abs_diff(result["weights"], load_file(tiny_qwen3_dir / "model.safetensors")) == 0.0


def test_opd_megatron_teacher_is_swapped_in_and_out(tp1_suite: dict) -> None:
    result = ok(tp1_suite, "opd")
    for teacher, reference in zip(result["teacher"], result["reference"], strict=True):
        assert torch.equal(teacher, reference)  # the held teacher computes exactly what that checkpoint loaded does
    assert max((a - t).abs().max().item() for a, t in zip(result["actor"], result["teacher"], strict=True)) > 1e-4
    assert max_abs_diff(result["after_swap"], result["start"]) == 0.0  # the actor's weights came back


def test_opd_reverse_kl_and_sglang_teacher_match_megatron_teacher(tp1_suite: dict) -> None:
    result = ok(tp1_suite, "opd")
    samples = result["batch"].samples
    mask = torch.cat([torch.tensor(s.loss_mask, dtype=torch.float64) for s in samples])
    diff = torch.cat(result["actor"]).double() - torch.cat(result["teacher"]).double()
    expected = float((diff * mask).sum() / mask.sum())  # old log-probs = the actor before the step
    megatron, sglang = result["megatron"], result["sglang"]
    assert megatron["rollout/opd_reverse_kl"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    for key in ("rollout/opd_reverse_kl", "train/loss", "train/pg_loss", "train/grad_norm"):
        assert sglang[key] == pytest.approx(megatron[key], rel=1e-5, abs=1e-8), key
    assert "carry no teacher_log_probs" in result["missing"] and "post_process_rewards" in result["missing"]


@pytest.mark.parametrize("world", ["tp1_suite", "tp2_suite"])
def test_export_without_pipeline_equals_mbridges_walk(world: str, request: pytest.FixtureRequest) -> None:
    """Without PP the package skips mbridge's per-tensor pipeline broadcasts; the stream must stay mbridge's."""
    paths = ok(request.getfixturevalue(world), "export_paths")
    assert [n for n, _ in paths["ours"]] == [n for n, _ in paths["mbridge"]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(paths["ours"], paths["mbridge"], strict=True))
