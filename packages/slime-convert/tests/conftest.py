"""Fixtures of the slime.convert tests.

- `tests/support/` is importable as `slime_convert_testsupport` (a unique name: every package's tests can share
  one pytest session).
- `models`: the tiny checkpoints every test converts, built once per run (shared by xdist workers): Qwen3 (vocab
  256, untied), Qwen2 (vocab 300: Megatron pads it to 384) and Llama (vocab 300, tied embeddings).
- `megatron_single` / `megatron_multi`: the Megatron conversions, run once per test run in real processes
  (CPU shim installed there, never here) by the seeds' tool scripts and the CLI; tests read their outputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SUPPORT = Path(__file__).resolve().parent / "support"
if "slime_convert_testsupport" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "slime_convert_testsupport", _SUPPORT / "__init__.py", submodule_search_locations=[str(_SUPPORT)]
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["slime_convert_testsupport"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder of this test run shared by all xdist workers."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def _once(path: Path, build) -> Path:
    """Build `path` under a file lock unless a finished one is there (`<path>/.done`)."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        if not (path / ".done").exists():
            build(path)
            (path / ".done").write_text("")
    return path


@pytest.fixture(scope="session")
def models(shared_tmp: Path) -> dict[str, Path]:
    """family -> tiny HF checkpoint folder (see the module docstring)."""
    from slime_convert_testsupport.jobs import FAMILIES, VARIANTS
    from slime_testkit.models import build_model

    def build(root: Path) -> None:
        for family, variant in VARIANTS.items():
            build_model(root / family, family, **variant)

    root = _once(shared_tmp / "convert_models", build)
    return {family: root / family for family in FAMILIES}


@pytest.fixture(scope="session")
def megatron_single(shared_tmp: Path, models: dict[str, Path]) -> Path:
    """One process: HF -> torch_dist per family (tool script), torch_dist and torch format -> HF (trainer path)."""
    from slime_convert_testsupport.jobs import single_rank_job
    from slime_convert_testsupport.launch import run_job

    return _once(shared_tmp / "convert_single", lambda out: run_job(single_rank_job(models, out), 1, out))


@pytest.fixture(scope="session")
def megatron_multi(shared_tmp: Path, models: dict[str, Path]) -> Path:
    """Two ranks: HF -> torch_dist (PP=2 chosen), then that checkpoint -> HF with TP=2 (reshaped on load)."""
    from slime_convert_testsupport.jobs import two_rank_job
    from slime_convert_testsupport.launch import run_job

    return _once(shared_tmp / "convert_multi", lambda out: run_job(two_rank_job(models, out), 2, out))


@pytest.fixture(scope="session")
def fsdp_checkpoints(shared_tmp: Path, models: dict[str, Path]) -> dict[str, Path]:
    """family -> slime.fsdp checkpoint root written by `slime-convert hf-to-dcp` (plus `qwen3_bf16`, from bf16)."""
    import torch
    from slime_convert_testsupport.jobs import FAMILIES
    from slime_testkit.models import build_model

    from slime.convert import main

    def build(root: Path) -> None:
        torch.set_num_threads(1)
        bf16 = build_model(root / "hf_qwen3_bf16", "qwen3", dtype=torch.bfloat16)
        for name, hf in [*((f, models[f]) for f in FAMILIES), ("qwen3_bf16", bf16)]:
            assert main(["hf-to-dcp", "--hf-checkpoint", str(hf), "--save", str(root / name), "--quiet"]) == 0

    root = _once(shared_tmp / "convert_fsdp", build)
    return {name: root / name for name in (*FAMILIES, "qwen3_bf16")}
