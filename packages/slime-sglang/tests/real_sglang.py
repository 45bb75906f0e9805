"""Stock SGLang 0.5.17's own weight-update code, loaded on a CPU machine where `import sglang` cannot run.

`find_source()` finds SGLang's source: the installed package, `$SLIME_SGLANG_SOURCE` (a folder holding
`sglang/`, or a wheel), or the wheel that `ci/gpu/sglang/prepare.sh` downloads into `.sgl/`. A wheel is
unpacked once into a cache folder. `install()` (run it only in a subprocess: it registers modules named
`sglang.*`) makes these REAL pieces importable under their real names, compiled from SGLang's files:

- `sglang.srt.weight_sync.tensor_bucket` (whole file: FlattenedTensorBucket, FlattenedTensorMetadata);
- `sglang.srt.utils.patch_torch` (whole file: monkey_patch_torch_reductions);
- from `sglang/srt/utils/common.py`: SafeUnpickler, MultiprocessingSerializer, init_custom_process_group,
  normalize_serialized_named_tensor_payload(s) (the rest of that file imports GPU-only packages);
- from `sglang/srt/utils/network.py`: NetworkAddress; from `model_runner_components/weight_updater.py`: the
  WeightUpdater class and its helpers.

Stand-ins (not SGLang code): `pybase64` is the stdlib `base64` (same API, SGLang uses it for speed);
`is_npu`/`is_musa` are False; `_unsupported_derived_weight_cache_error` (a GPU-kernel flag check) returns None.
`io_struct_fields()` reads the request classes' fields from `io_struct.py` without importing it (msgspec).
"""

from __future__ import annotations
import __future__

import ast
import base64
import dataclasses
import importlib
import logging
import os
import shutil
import sys
import tempfile
import types
import typing
import zipfile
from pathlib import Path
from typing import Any

VERSION = "0.5.17"
_TYPING = {name: getattr(typing, name) for name in typing.__all__}  # what `from typing import ...` can bind
REPO = Path(__file__).resolve().parents[3]


def _unpack(wheel: Path) -> Path:
    """Unpack the wheel's Python files once. Atomic (a private folder renamed into place): pytest-xdist workers
    unpack at the same time, and a half-written folder must never look complete."""
    cache = os.environ.get("SLIME_SGLANG_CACHE") or Path(tempfile.gettempdir()) / "slime-sglang-source"
    target = Path(cache) / wheel.stem
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f".{wheel.stem}.", dir=target.parent))
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith("sglang/") and m.endswith(".py")]
            archive.extractall(private, members)
        try:
            private.rename(target)
        except OSError:  # another worker finished first: its folder is complete
            shutil.rmtree(private, ignore_errors=True)
    return target


def find_source() -> Path | None:
    """The folder holding SGLang 0.5.17's `sglang/` package, or None if none is found here."""
    spec = importlib.util.find_spec("sglang") if "sglang" not in sys.modules else None
    candidates: list[Path] = []
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parents[1])
    if os.environ.get("SLIME_SGLANG_SOURCE"):
        candidates.append(Path(os.environ["SLIME_SGLANG_SOURCE"]))
    candidates += sorted(REPO.glob(f".sgl/*/sglang-{VERSION}-*.whl"))
    for candidate in candidates:
        root = _unpack(candidate) if candidate.suffix == ".whl" else candidate
        if (root / "sglang" / "srt" / "weight_sync" / "tensor_bucket.py").is_file():
            return root
    return None


def _package(name: str, folder: Path) -> None:
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    sys.modules[name] = module


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    return None


def _module_from(name: str, path: Path, wanted: set[str], env: dict[str, Any]) -> types.ModuleType:
    """A module `name` holding only the top-level definitions `wanted` of the real file `path`."""
    tree = ast.parse(path.read_text(), str(path))
    body = [n for n in tree.body if _defined_name(n) in wanted]
    missing = wanted - {_defined_name(n) for n in body}
    if missing:
        raise LookupError(f"{path} no longer defines {sorted(missing)}: SGLang changed; update this loader.")
    module = types.ModuleType(name)
    module.__dict__.update(env, __name__=name, __file__=str(path))
    sys.modules[name] = module
    code = compile(ast.Module(body=body, type_ignores=[]), str(path), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)  # fmt: skip
    exec(code, module.__dict__)  # noqa: S102  # SGLang's own source, compiled from its file
    return module


def install(root: Path) -> dict[str, Any]:
    """Register the real pieces (see the module docstring); returns them by name."""
    import io
    import pickle
    import socket
    from multiprocessing.reduction import ForkingPickler

    import torch

    srt = root / "sglang" / "srt"
    for name, folder in (("sglang", root / "sglang"), ("sglang.srt", srt), ("sglang.srt.utils", srt / "utils"),
                         ("sglang.srt.weight_sync", srt / "weight_sync"),
                         ("sglang.srt.model_executor", srt / "model_executor"),
                         ("sglang.srt.model_executor.model_runner_components",
                          srt / "model_executor" / "model_runner_components")):  # fmt: skip
        _package(name, folder)
    bucket = importlib.import_module("sglang.srt.weight_sync.tensor_bucket")
    release = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:3])
    common_env = {"io": io, "pickle": pickle, "binascii": __import__("binascii"), "torch": torch,
                  "ForkingPickler": ForkingPickler, "pybase64": base64, "torch_release": release,
                  "is_npu": lambda: False, "is_musa": lambda: False, **_TYPING}  # fmt: skip
    common = _module_from("sglang.srt.utils.common", srt / "utils" / "common.py",
                          {"SafeUnpickler", "MultiprocessingSerializer", "init_custom_process_group",
                           "_looks_like_pickle_payload", "normalize_serialized_named_tensor_payload",
                           "normalize_serialized_named_tensor_payloads", "SerializedTensorPayload"},
                          common_env)  # fmt: skip
    patch_torch = importlib.import_module("sglang.srt.utils.patch_torch")
    network = _module_from("sglang.srt.utils.network", srt / "utils" / "network.py",
                           {"NetworkAddress", "_wrap", "_is_ipv6", "_parse_port"},
                           {"dataclass": dataclasses.dataclass, "socket": socket,
                            "ipaddress": __import__("ipaddress"), **_TYPING})  # fmt: skip
    updater_env = {"torch": torch, "gc": __import__("gc"), "logging": logging, "logger": logging.getLogger("sglang"),
                   "dataclass": dataclasses.dataclass, "field": dataclasses.field, **_TYPING,
                   "FlattenedTensorBucket": bucket.FlattenedTensorBucket,
                   "FlattenedTensorMetadata": bucket.FlattenedTensorMetadata,
                   "MultiprocessingSerializer": common.MultiprocessingSerializer,
                   "init_custom_process_group": common.init_custom_process_group,
                   "NetworkAddress": network.NetworkAddress,
                   "monkey_patch_torch_reductions": patch_torch.monkey_patch_torch_reductions,
                   "_unsupported_derived_weight_cache_error": lambda: None}  # fmt: skip
    updater = _module_from("sglang.srt.model_executor.model_runner_components.weight_updater",
                           srt / "model_executor" / "model_runner_components" / "weight_updater.py",
                           {"WeightUpdater", "_model_load_weights_direct", "_unwrap_tensor"}, updater_env)  # fmt: skip
    return {"bucket": bucket, "common": common, "patch_torch": patch_torch, "WeightUpdater": updater.WeightUpdater}


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of an SGLang request class: its name and whether the body must carry it."""

    name: str
    required: bool


def io_struct_fields(root: Path, class_name: str) -> dict[str, Field]:
    """The fields of `class_name` in SGLang's `io_struct.py` (its own, then BaseReq's `rid`...), read by AST."""
    tree = ast.parse((root / "sglang" / "srt" / "managers" / "io_struct.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    fields: dict[str, Field] = {}
    node: ast.ClassDef | None = classes[class_name]
    while node is not None:
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                fields.setdefault(item.target.id, Field(item.target.id, item.value is None))
        bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in classes]
        node = classes[bases[0]] if bases else None
    return fields
