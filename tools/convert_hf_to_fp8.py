"""BF16 HF -> block-FP8 HF for FP8 rollout (the seeds' tool name and flags; a thin wrapper):

    python tools/convert_hf_to_fp8.py --model-dir HF --save-dir OUT [--strategy block] [--block-size 128]
        [--scale-fmt ue8m0] [--max-workers N]

Runs `slime-convert hf-to-fp8 --input-dir HF --output-dir OUT`. Only `--strategy block` is supported (the
channel / tensor strategies are refused); `--max-workers` is accepted and ignored (one process converts).
"""

from __future__ import annotations

import argparse
import sys

from slime.convert.cli import main


def _translate(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="convert_hf_to_fp8.py", allow_abbrev=False)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--save-dir", required=True)
    parser.add_argument("--strategy", default="block", choices=["block"], help="channel / tensor: not supported")
    parser.add_argument("--block-size", default="128")
    parser.add_argument("--scale-fmt", default="float32", choices=["float32", "ue8m0"])
    parser.add_argument("--max-workers", type=int, help="ignored")
    a, rest = parser.parse_known_args(argv)
    out = ["hf-to-fp8", "--input-dir", a.model_dir, "--output-dir", a.save_dir, "--block-size", a.block_size]
    return [*out, "--scale-fmt", a.scale_fmt, *rest]


if __name__ == "__main__":
    sys.exit(main(_translate(sys.argv[1:])))
