#!/bin/bash
# Run on the CPU machine (PyPI reachable), from anywhere in the repo: downloads the two wheels the device image
# lacks (megatron-core 0.16.1 for CPython 3.12, mbridge 0.15.1; 2.7 MB together) into the ignored folder .mwhl/,
# which the device call carries (`carry: [".mwhl"]`). Everything else (torch 2.11 cu130, transformers, einops,
# psutil, safetensors) is already in the device image.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
mkdir -p .git/info && touch .git/info/exclude
grep -qx '/.mwhl/' .git/info/exclude || echo '/.mwhl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .mwhl megatron-core==0.16.1 mbridge==0.15.1
ls -la .mwhl
