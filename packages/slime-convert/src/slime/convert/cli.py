"""The `slime-convert` command line: one subcommand per conversion, flags named as in the seeds' tools.

    slime-convert hf-to-torch-dist  --hf-checkpoint DIR --save DIR [Megatron flags]      (torchrun for N ranks)
    slime-convert torch-dist-to-hf  --input-dir .../iter_xxx --output-dir DIR --origin-hf-dir DIR [--vocab-size N]
    slime-convert megatron-to-hf    --load DIR --hf-checkpoint DIR --output-dir DIR [training flags]  (torchrun)
    slime-convert hf-to-dcp         --hf-checkpoint DIR --save DIR [--rollout-id N] [--lr ...]
    slime-convert dcp-to-hf         --input-dir DIR --output-dir DIR --origin-hf-dir DIR [--lora-alpha A]
    slime-convert hf-to-fp8         --input-dir DIR --output-dir DIR [--block-size 128] [--scale-fmt ue8m0]
    slime-convert check             --hf-checkpoint DIR [--input-dir DIR] [Megatron flags]

Commands that build a Megatron model take Megatron's flags (`slime.megatron.parse_megatron_args`) and ignore
other unknown flags, so a training command line can be reused. A `ConfigError` / `DataError` is printed as one
message and exits with status 2, before anything is written. The process group is torn down only if the command
created it. This module parses and dispatches; the conversions live in their own modules.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from slime.types import ConfigError, DataError

PROG = "slime-convert"
_SHARD_HELP = "bytes per safetensors shard (default 5 GiB)"


def _common(p: argparse.ArgumentParser, *, output: str, shards: bool = True) -> None:
    p.add_argument(output, required=True, help="folder to create (appears only when complete)")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if shards:
        p.add_argument("--chunk-size", type=int, default=5 * 1024**3, help=_SHARD_HELP)


def _add_commands(sub) -> None:
    p = sub.add_parser("hf-to-torch-dist", allow_abbrev=False, help="HF folder -> Megatron torch_dist (release)")
    p.add_argument("--hf-checkpoint", required=True)
    p.add_argument("--custom-model-provider-path", help="not supported: the model comes from mbridge")
    _common(p, output="--save", shards=False)
    p = sub.add_parser("torch-dist-to-hf", allow_abbrev=False, help="torch_dist iteration -> HF, no Megatron")
    p.add_argument("--input-dir", required=True, help="an iter_XXXXXXX folder (or a checkpoint root)")
    p.add_argument("--origin-hf-dir", required=True, help="HF folder the checkpoint came from")
    p.add_argument("--vocab-size", type=int, help="rows to keep (default: the origin config's vocab_size)")
    p.add_argument("--model-name", help="expected HF model_type (checked)")
    p.add_argument("-a", "--add-missing-from-origin-hf", action="store_true")
    _common(p, output="--output-dir")
    p = sub.add_parser("megatron-to-hf", allow_abbrev=False, help="any Megatron checkpoint -> HF via the trainer")
    p.add_argument("--hf-checkpoint", required=True)
    p.add_argument("--ckpt-format", choices=["torch_dist", "torch"], default="torch_dist")
    _common(p, output="--output-dir")
    p = sub.add_parser("hf-to-dcp", allow_abbrev=False, help="HF folder -> slime.fsdp DCP checkpoint")
    p.add_argument("--hf-checkpoint", required=True)
    p.add_argument("--rollout-id", type=int, default=0)
    for flag, kind in (("--lr", float), ("--min-lr", float), ("--lr-decay-style", str), ("--lr-warmup-iters", int)):
        p.add_argument(flag, type=kind)
    for flag, kind in (("--lr-warmup-init", float), ("--lr-decay-iters", int), ("--weight-decay", float)):
        p.add_argument(flag, type=kind)
    for flag in ("--adam-beta1", "--adam-beta2", "--adam-eps"):
        p.add_argument(flag, type=float)
    _common(p, output="--save", shards=False)
    p = sub.add_parser("dcp-to-hf", allow_abbrev=False, help="slime.fsdp DCP checkpoint -> HF")
    p.add_argument("--input-dir", required=True, help="checkpoint root or iter_* folder")
    p.add_argument("--origin-hf-dir", required=True)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--lora-alpha", type=float, help="the run's --lora-alpha, when it trained LoRA adapters")
    _common(p, output="--output-dir")
    p = sub.add_parser("hf-to-fp8", allow_abbrev=False, help="BF16 HF -> block-FP8 HF (FP8 rollout checkpoint)")
    p.add_argument("--input-dir", required=True, help="the BF16 HF model folder")
    p.add_argument("--block-size", type=int, default=128, help="weight_block_size [N, N] (default 128)")
    p.add_argument("--scale-fmt", choices=["float32", "ue8m0"], default="float32")
    _common(p, output="--output-dir")
    p = sub.add_parser("check", allow_abbrev=False, help="validate without converting")
    p.add_argument("--hf-checkpoint", required=True)
    p.add_argument("--input-dir", help="a torch_dist or slime.fsdp checkpoint to check against it")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser (subcommand flags only; Megatron's flags are parsed from what is left)."""
    parser = argparse.ArgumentParser(prog=PROG, allow_abbrev=False, description=__doc__.splitlines()[0])
    _add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _megatron(rest: list[str], *, command: str) -> argparse.Namespace:
    from slime.megatron import parse_megatron_args

    ns, ignored = parse_megatron_args(rest)
    if ignored and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"{PROG} {command}: ignoring {len(ignored)} argument(s) it does not use: {' '.join(ignored)}",
            file=sys.stderr,
        )
    return ns


def _hf_to_torch_dist(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.hf_to_torch_dist import HfToTorchDistConfig, hf_to_torch_dist

    if a.custom_model_provider_path:
        raise ConfigError(
            "--custom-model-provider-path is not supported: the model is built by mbridge from the HF config."
        )
    config = HfToTorchDistConfig(hf_checkpoint=a.hf_checkpoint, save=a.save, force=a.force, quiet=a.quiet)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return hf_to_torch_dist(config, _megatron(rest, command=a.command), world_size)


def _torch_dist_to_hf(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.torch_dist_to_hf import TorchDistToHfConfig, torch_dist_to_hf

    return torch_dist_to_hf(
        TorchDistToHfConfig(
            input_dir=a.input_dir, output_dir=a.output_dir, origin_hf_dir=a.origin_hf_dir, vocab_size=a.vocab_size,
            model_name=a.model_name, force=a.force, add_missing_from_origin_hf=a.add_missing_from_origin_hf,
            chunk_size=a.chunk_size, quiet=a.quiet,
        )
    )  # fmt: skip


def _megatron_to_hf(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.megatron_to_hf import MegatronToHfConfig, megatron_to_hf

    config = MegatronToHfConfig(
        hf_checkpoint=a.hf_checkpoint, output_dir=a.output_dir, ckpt_format=a.ckpt_format, force=a.force,
        chunk_size=a.chunk_size, quiet=a.quiet,
    )  # fmt: skip
    return megatron_to_hf(config, _megatron(rest, command=a.command))


def _hf_to_dcp(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.hf_to_dcp import OPTIMIZER_FIELDS, HfToDcpConfig, hf_to_dcp

    optimizer = {f: getattr(a, f) for f in OPTIMIZER_FIELDS if getattr(a, f) is not None}
    return hf_to_dcp(
        HfToDcpConfig(
            hf_checkpoint=a.hf_checkpoint, save=a.save, rollout_id=a.rollout_id, optimizer=optimizer, force=a.force
        )
    )


def _dcp_to_hf(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.dcp_to_hf import DcpToHfConfig, dcp_to_hf

    return dcp_to_hf(
        DcpToHfConfig(
            input_dir=a.input_dir, output_dir=a.output_dir, origin_hf_dir=a.origin_hf_dir, dtype=a.dtype,
            lora_alpha=a.lora_alpha, force=a.force, chunk_size=a.chunk_size, quiet=a.quiet,
        )
    )  # fmt: skip


def _hf_to_fp8(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.hf_to_fp8 import HfToFp8Config, hf_to_fp8

    return hf_to_fp8(
        HfToFp8Config(
            input_dir=a.input_dir, output_dir=a.output_dir, block_size=a.block_size, scale_fmt=a.scale_fmt,
            force=a.force, chunk_size=a.chunk_size, quiet=a.quiet,
        )
    )  # fmt: skip


def _check(a: argparse.Namespace, rest: list[str]) -> object:
    from slime.convert.check import run_check

    lines = run_check(a.hf_checkpoint, a.input_dir, _megatron(rest, command=a.command) if rest else None)
    print("\n".join(f"ok: {line}" for line in lines))
    return None


_HANDLERS: dict[str, Callable[[argparse.Namespace, list[str]], object]] = {
    "hf-to-torch-dist": _hf_to_torch_dist,
    "torch-dist-to-hf": _torch_dist_to_hf,
    "megatron-to-hf": _megatron_to_hf,
    "hf-to-dcp": _hf_to_dcp,
    "dcp-to-hf": _dcp_to_hf,
    "hf-to-fp8": _hf_to_fp8,
    "check": _check,
}
_PASSTHROUGH = frozenset({"hf-to-torch-dist", "megatron-to-hf", "check"})
"""Commands that take Megatron's (and ignore other) flags besides their own."""


def _run(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in _PASSTHROUGH:
        parser.error(f"{args.command}: unrecognized arguments: {' '.join(rest)}")
    try:
        result = _HANDLERS[args.command](args, rest)
    except (ConfigError, DataError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    if result is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"{PROG} {args.command}: wrote {result}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `slime-convert` console script; returns the exit status."""
    import torch.distributed as dist

    owned = not dist.is_initialized()
    try:
        return _run(build_parser(), list(sys.argv[1:] if argv is None else argv))
    finally:
        if owned and dist.is_initialized():
            _teardown()


def _teardown() -> None:
    """Destroy the process group (and Megatron's groups) this command created."""
    import torch.distributed as dist

    if "megatron.core" in sys.modules:
        from slime.convert import megatron_world

        megatron_world.stop()
    else:
        dist.destroy_process_group()
