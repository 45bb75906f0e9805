"""Engine launch settings and the `--sglang-*` pass-through: the only module that knows SGLang's ServerArgs.

slime's rule: every `--sglang-<flag> [values]` on slime's command line is given to the engine as
`--<flag> [values]`, except the flags slime owns (`SLIME_OWNED`). `--model-path` comes from `--hf-checkpoint`
and `--tp-size` from `--rollout-num-gpus-per-engine` / pp size; host and ports are set by the launcher. When
sglang is installed, pass-through flags are checked against its `ServerArgs` (a dataclass in 0.5.17, a
msgspec Struct in later versions; both are handled) so a typo fails before a GPU is touched; for the local
server they are checked against its own parser. This module starts nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from slime.types import ConfigError

Backend = Literal["sglang", "local"]
SLIME_OWNED = frozenset({"router-ip", "router-port", "router-request-timeout-secs", "server-concurrency", "config"})
"""`--sglang-*` flags slime itself consumes; they are never passed to the engine."""
LAUNCHER_OWNED = frozenset({"--model-path", "--tp-size", "--tensor-parallel-size", "--host", "--port", "--nccl-port"})
"""Engine flags the launcher sets itself; passing them through is an error naming the slime flag to use."""
MODULES: Mapping[Backend, str] = {"sglang": "sglang.launch_server", "local": "slime.sglang.local_server"}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EngineConfig:
    """How to launch one generation engine."""

    model_path: str
    """HF checkpoint the engine serves (slime: `--hf-checkpoint`)."""
    backend: Backend = "sglang"
    """`sglang` runs `python -m sglang.launch_server`; `local` runs slime's transformers-backed server (CPU)."""
    num_gpus_per_engine: int = 1
    """GPUs per engine (slime: `--rollout-num-gpus-per-engine`) = tp_size x pp_size."""
    server_args: tuple[str, ...] = ()
    """Extra engine flags in the engine's own spelling, e.g. `("--mem-fraction-static", "0.7")`."""
    host: str = "127.0.0.1"
    """Address the engine binds and is reached at."""
    startup_timeout_s: float = 600.0
    """How long to wait for the engine's health check after launch."""
    log_dir: str | None = None
    """Folder for engine logs (a temp file each when None)."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment variables for the engine process."""
    base_gpu_id: int = 0
    """First GPU of the rollout on this node: engine slot k uses GPUs `base_gpu_id + k * num_gpus_per_engine` on
    (SGLang's `--base-gpu-id`). slime.train sets it after the actor's GPUs when not colocated."""

    def __post_init__(self) -> None:
        if self.base_gpu_id < 0:
            raise ConfigError(f"`base_gpu_id` must be >= 0 (got {self.base_gpu_id}).")
        if not self.model_path:
            raise ConfigError("`model_path` is empty; set --hf-checkpoint to the HF checkpoint the engines serve.")
        if self.backend not in MODULES:
            raise ConfigError(f"`backend` {self.backend!r} is not one of {sorted(MODULES)}.")
        if self.num_gpus_per_engine < 1:
            raise ConfigError(f"`num_gpus_per_engine` must be >= 1 (got {self.num_gpus_per_engine}); set "
                              "--rollout-num-gpus-per-engine.")  # fmt: skip
        if self.num_gpus_per_engine % self.pp_size:
            raise ConfigError(f"--rollout-num-gpus-per-engine {self.num_gpus_per_engine} is not divisible by "
                              f"--sglang-pp-size {self.pp_size}.")  # fmt: skip
        if self.startup_timeout_s <= 0:
            raise ConfigError(f"`startup_timeout_s` must be > 0 (got {self.startup_timeout_s}).")
        owned = sorted(LAUNCHER_OWNED & set(flag_names(self.server_args)))
        if owned:
            raise ConfigError(
                f"engine flags {owned} are set by slime: use --hf-checkpoint for the model, "
                "--rollout-num-gpus-per-engine for tp, and let the launcher pick host and ports."
            )

    @property
    def pp_size(self) -> int:
        values = flag_values(self.server_args, ("--pp-size", "--pipeline-parallel-size"))
        return int(values[0]) if values else 1

    @property
    def tp_size(self) -> int:
        return self.num_gpus_per_engine // self.pp_size


def split_sglang_args(argv: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """Split slime's command line into (everything else, engine flags translated `--sglang-x` -> `--x`).

    Values following a pass-through flag (tokens not starting with `--`) travel with it; `--sglang-x=v` works.
    """
    rest: list[str] = []
    engine: list[str] = []
    target = rest
    for token in argv:
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            is_engine = name.startswith("sglang-") and name.removeprefix("sglang-") not in SLIME_OWNED
            target = engine if is_engine else rest
            target.append(f"--{name.removeprefix('sglang-')}{eq}{value}" if is_engine else token)
        else:
            target.append(token)
    return rest, tuple(engine)


def flag_names(args: Iterable[str]) -> list[str]:
    """The `--flag` names in an argument list (without `=value`)."""
    return [a.partition("=")[0] for a in args if a.startswith("--")]


def flag_values(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """Values given to any of `names` (`--x v` or `--x=v`)."""
    out = []
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            out.append(value if eq else (args[i + 1] if i + 1 < len(args) else ""))
    return out


def validate_server_args(args: Sequence[str], known: frozenset[str] | None, *, backend: Backend) -> None:
    """Raise `ConfigError` for a flag `known` does not contain (None = cannot check, accept everything)."""
    if known is None:
        return
    for name in flag_names(args):
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" Did you mean --sglang-{close[0][2:]}?" if close else ""
            where = "the installed sglang's ServerArgs" if backend == "sglang" else "the local server's flags"
            raise ConfigError(f"--sglang-{name[2:]} is not in {where}.{hint}")


@functools.cache
def known_server_flags(backend: Backend) -> frozenset[str] | None:
    """Every flag the engine accepts; None when sglang is not installed here (the GPU image checks again)."""
    if backend == "local":
        from slime.sglang.local_server.cli import build_parser

        return _parser_flags(build_parser())
    try:
        from sglang.srt.server_args import ServerArgs
    except ImportError:
        return None
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    try:
        ServerArgs.add_cli_args(parser)
        return _parser_flags(parser)
    except Exception:  # an sglang whose parser cannot be built here: fall back to the field names
        return frozenset(f"--{name.replace('_', '-')}" for name in _server_args_fields(ServerArgs))


def _parser_flags(parser: object) -> frozenset[str]:
    return frozenset(s for action in parser._actions for s in action.option_strings if s.startswith("--"))  # type: ignore[attr-defined]


def _server_args_fields(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return list(getattr(cls, "__struct_fields__", ()))  # msgspec.Struct (sglang >= 0.5.2x)


def launch_command(config: EngineConfig, port: int, nccl_port: int | None = None, *, gpu_slot: int = 0) -> list[str]:
    """The engine's argv (run under the current interpreter); `gpu_slot` picks its GPUs (see `base_gpu_id`).

    A `--base-gpu-id` the user passed through wins (then every engine gets that one: pin GPUs per engine with
    CUDA_VISIBLE_DEVICES instead)."""
    command = [sys.executable, "-m", MODULES[config.backend], "--model-path", config.model_path,
               "--tp-size", str(config.tp_size), "--host", config.host, "--port", str(port)]  # fmt: skip
    if config.backend == "sglang":
        if nccl_port is not None:
            command += ["--nccl-port", str(nccl_port)]
        if not flag_values(config.server_args, ("--base-gpu-id",)):
            command += ["--base-gpu-id", str(config.base_gpu_id + gpu_slot * config.num_gpus_per_engine)]
    return command + list(config.server_args)
