"""Where weights come from: `--load` / `--ckpt-step` / `--ref-load` / `--hf-checkpoint`, as the seeds describe."""

from __future__ import annotations

from pathlib import Path

import pytest

from slime.megatron.checkpoint_layout import iteration_dir, read_tracker, resolve_iteration
from slime.megatron.load_plan import plan_loading, teacher_source
from slime.types import ConfigError


def _megatron_root(path: Path, *iterations: int, tracker: str | None = None) -> str:
    for it in iterations:
        iteration_dir(path, it).mkdir(parents=True)
    (path / "latest_checkpointed_iteration.txt").write_text(tracker or str(iterations[-1]))
    return str(path)


def _plan(hf: str, **kw):
    defaults = dict(
        load=None,
        ckpt_step=None,
        ref_load=None,
        ref_ckpt_step=None,
        no_load_optim=False,
        no_load_rng=False,
        finetune=False,
        need_ref=False,
    )
    return plan_loading(hf_checkpoint=hf, **{**defaults, **kw})


def test_megatron_load_resumes_with_optimizer(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    load = _megatron_root(tmp_path / "run", 10, 20)
    plan = _plan(str(tiny_qwen3_dir), load=load, ckpt_step=10)
    assert (plan.actor.format, plan.actor.path, plan.actor.step) == ("torch_dist", load, 10)
    assert plan.resume and plan.load_optim and plan.load_rng and plan.ref is None


@pytest.mark.parametrize("flag", ["no_load_optim", "finetune"])
def test_no_load_optim_and_finetune(tmp_path: Path, tiny_qwen3_dir: Path, flag: str) -> None:
    plan = _plan(str(tiny_qwen3_dir), load=_megatron_root(tmp_path / "run", 5), **{flag: True})
    assert not plan.load_optim
    assert plan.resume == (flag != "finetune")


def test_load_without_tracker_falls_back_to_ref_load(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    (tmp_path / "empty_run").mkdir()
    ref = _megatron_root(tmp_path / "ref", 0)
    for load in (str(tmp_path / "empty_run"), str(tmp_path / "missing"), None):
        plan = _plan(str(tiny_qwen3_dir), load=load, ref_load=ref, ref_ckpt_step=0, need_ref=True)
        assert (plan.actor.format, plan.actor.path, plan.actor.step) == ("torch_dist", ref, 0)
        assert not plan.resume and not plan.load_optim
        assert plan.ref is not None and plan.ref.path == ref


def test_hf_folders_load_directly(tiny_qwen3_dir: Path) -> None:
    plan = _plan(str(tiny_qwen3_dir), load=str(tiny_qwen3_dir))
    assert plan.actor.format == "hf" and not plan.resume
    plan = _plan(str(tiny_qwen3_dir), need_ref=True)  # nothing given: the HF checkpoint, also as reference
    assert plan.actor.format == "hf" and plan.ref is not None and plan.ref.format == "hf"


def test_bad_ref_load_is_an_error(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--ref-load"):
        _plan(str(tiny_qwen3_dir), ref_load=str(tmp_path))


def test_tracker_and_ckpt_step(tmp_path: Path) -> None:
    root = _megatron_root(tmp_path / "r", 3, 7)
    assert read_tracker(root) == 7 and resolve_iteration(root, None) == 7 and resolve_iteration(root, 3) == 3
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_iteration(root, 5)
    release = tmp_path / "rel"
    (release / "release").mkdir(parents=True)
    (release / "latest_checkpointed_iteration.txt").write_text("release")
    assert resolve_iteration(release, None) == "release"


def test_opd_teacher_source(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    assert teacher_source(str(tiny_qwen3_dir), None).format == "hf"
    root = _megatron_root(tmp_path / "t", 2)
    source = teacher_source(str(root), 2)
    assert source.format == "torch_dist" and source.step == 2
    with pytest.raises(ConfigError, match="--opd-teacher-load"):
        teacher_source(str(tmp_path / "missing"), None)
