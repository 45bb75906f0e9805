#!/bin/bash
# Run on the CPU machine (PyPI reachable), from the repo root: builds the ignored folders (.sgl/, already in
# .gitignore) that carry stock SGLang 0.5.17, sglang-router 0.3.2 and zstandard to a lent H100/H200 in calls of
# at most 64 MiB each (with the tracked tree). Adapted from shared/gpu/sglang/prepare.sh; facts and figures:
# shared/reference/sglang-on-device.md. Commands for the device: ci/gpu/sglang/README.md.
#   bash ci/gpu/sglang/prepare.sh          # c01, c02 (SGLang), c03 (router, zstandard), f1..f3 (FA3 binary)
#   NO_FA3=1 bash ci/gpu/sglang/prepare.sh # without FA3 (then use --attention-backend triton)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
S=${SGL_DIR:-.sgl}
mkdir -p $S/dl
PLAT="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_39_x86_64
 --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
# c01 + the repo must stay under the 64 MiB a call carries: xgrammar (45 MB, needed from stage 3 on) travels in c03.
C01="sglang-router==0.3.2 transformers==5.12.1 tokenizers==0.22.2 apache-tvm-ffi==0.1.11 pydantic-core==2.50.4"
C02="sglang==0.5.17 sglang-kernel==0.4.5 flashinfer-python==0.6.15.post1 soundfile==0.13.1 openai==2.6.1
 pyzmq==27.3.0 ipython==9.18.1 datasets==5.2.0 pydantic==2.14.3 rpds-py==2026.9.1 compressed-tensors==0.20.0
 msgspec==0.22.0 cffi==2.1.1 fastapi==0.165.0 multiprocess==0.70.19 orjson==3.13.0 dill==0.4.1 gguf==0.19.0
 pybase64==1.5.1 jsonschema==4.26.0 uvicorn==0.54.0 traitlets==5.16.1 starlette==1.10.0 loguru==0.7.3
 opentelemetry-api==1.45.2 setproctitle==1.3.8 python-multipart==0.0.34 referencing==0.37.0 distro==1.9.0
 jsonschema-specifications==2025.9.1 typing-inspection==0.4.5 annotated-types==0.8.0
 partial-json-parser==0.2.1.1.post7 sniffio==1.3.1"
# The client tests need the real router (its runtime deps setproctitle, orjson, uvicorn, fastapi are in c02;
# aiohttp is in the image) and slime.sync's zstandard; pytest, psutil and safetensors are in the image.
# The colocated loop (#13) needs SGLang's memory saver (--enable-memory-saver) and, for Megatron, megatron-core
# and mbridge (ci/gpu/megatron/fetch_wheels.sh's pair): 5.3 MB more, still under the limit with the tree.
C03="xgrammar==0.2.1 zstandard==0.25.0 torch-memory-saver==0.0.10 megatron-core==0.16.1 mbridge==0.15.1"
python3 -m pip download -q $PLAT -d $S/dl $C01 $C02 $C03
rm -rf $S/c01 $S/c02 $S/c03 && mkdir -p $S/c01 $S/c02 $S/c03
for w in $C01; do n=${w%%==*}; v=${w##*==}; cp $S/dl/$(echo $n | tr - _)-$v-*.whl $S/c01/; done
for w in $C02; do n=${w%%==*}; v=${w##*==}; cp $S/dl/$(echo $n | tr - _)-$v-*.whl $S/c02/; done
for w in $C03; do n=${w%%==*}; v=${w##*==}; cp $S/dl/$(echo $n | tr - _)-$v-*.whl $S/c03/; done
K=$(ls $S/c02/sglang_kernel-0.4.5-*.whl)
if [ -z "${NO_FA3:-}" ] && [ ! -s $S/fo.sha256 ]; then
  # FA3 kernels (1.12 GB raw, 342 MB deflated) travel apart, xz-packed to ~148 MB, in 3 calls
  unzip -p $K sgl_kernel/flash_ops.abi3.so | xz -T0 -6 > $S/flash_ops.so.xz
  unzip -p $K sgl_kernel/flash_ops.abi3.so | sha256sum | cut -d' ' -f1 > $S/fo.sha256
  rm -rf $S/f1 $S/f2 $S/f3 && mkdir -p $S/f1 $S/f2 $S/f3
  split -n 3 -d -a 1 $S/flash_ops.so.xz $S/fo.part
  mv $S/fo.part0 $S/f1/ && mv $S/fo.part1 $S/f2/ && mv $S/fo.part2 $S/f3/ && cp $S/fo.sha256 $S/f3/
fi
# The H100/H200 needs only sm90/common_ops of sglang-kernel at import; drop FA3 (carried apart),
# the sm100 build and the InfLLM / FlashMLA extensions from the copy that travels.
zip -q -d $K 'sgl_kernel/flash_ops.abi3.so' 'sgl_kernel/sm100/*' 'sgl_kernel/infllm_ops*' 'sgl_kernel/flashmla_ops*' || true
du -sb $S/c01 $S/c02 $S/c03 $S/f? 2>/dev/null
echo "tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes; each carried folder + the tracked tree must stay under 67108864 bytes"
