#!/bin/bash
# Runs ON THE DEVICE (lent H100/H200), from the repo root, via the `run` tool. Subcommands:
#   stage1            install .sgl/c01 into /tmp/site, build the random Qwen3-0.6B-shaped model
#   stage2            install .sgl/c02 into /tmp/site, import check
#   stage3            install .sgl/c03 (xgrammar, zstandard, torch-memory-saver, megatron-core, mbridge), import
#                     check of SGLang and slime.sglang
#   model4b           build the random Qwen3-4B-shaped model (then SHAPE=4b before any subcommand uses it)
#   keep DIR          keep a flash_ops part (DIR = .sgl/f1 | .sgl/f2 | .sgl/f3) under /root/fo
#   fa3               rebuild sgl_kernel/flash_ops.abi3.so from the 3 parts (enables the default fa3 backend)
#   bench TAG OUTLEN TIMEOUT [sglang args]        sglang.bench_offline_throughput, 256 prompts, input 128
#   client TAG OUTLEN TIMEOUT [sglang args]       benchmarks/bench_engine.py: slime's client through the router,
#                                                 same prompts/lengths, vs `bench TAG OUTLEN` and the decode floor
#                                                 ($CLIENT_ARGS go to bench_engine.py, e.g. --no-logprob)
#   tests TIMEOUT [sglang args]                   slime.sglang's client tests against stock SGLang (2 engines + router)
#   server TAG [sglang args]                      launch_server, /health, /generate, /update_weights_from_disk
#   weights TIMEOUT [weight_sync_test.py args]    slime.sync -> stock SGLang through its own weight routes (#6):
#                                                 CUDA IPC tensor path, disk, broadcast (gloo; nccl on 2 GPUs)
#   loop BACKEND TIMEOUT [slime flags]            slime.train's colocated GRPO loop on one GPU (--no-ray), BACKEND
#                                                 fsdp | megatron (megatron-core and mbridge come with stage3)
#   disagg BACKEND TIMEOUT sync|async [flags]     the same on 2 GPUs (trainer GPU 0, engine GPU 1, NCCL weights)
#   fp8 TIMEOUT [flags]                           the Megatron loop with a block-FP8 engine (bf16 training, TIS)
H=$(dirname "$0")
SHAPE=${SHAPE:-0.6b}  # SHAPE=4b runs any subcommand on the 4B shape (after `model4b`)
M=/root/qwen3-$SHAPE-rand
SRC=$(ls -d packages/*/src | paste -sd:)
export PYTHONPATH=/tmp/site:$SRC:testing PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # KINDS.md: never multicast
T0=$(date +%s)
case "$1" in
stage1)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .sgl/c01/*.whl || exit 1
  echo "c01 installed at +$(( $(date +%s)-T0 ))s"
  python3 -c "import transformers, tokenizers; print('transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"
  python3 $H/gen_model.py /root/qwen3-0.6b-rand 28 0.6b 2>&1 | grep -v shards
  du -sh /root/qwen3-0.6b-rand ;;
stage2)
  [ -d /tmp/site/transformers ] || { echo "NO /tmp/site from stage1: the machine was not kept warm"; exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .sgl/c02/*.whl || exit 1
  echo "c02 installed at +$(( $(date +%s)-T0 ))s (import check after stage3: xgrammar travels in c03)" ;;
stage3)
  [ -d /tmp/site/sglang ] || { echo "NO /tmp/site from stage2: the machine was not kept warm"; exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .sgl/c03/*.whl || exit 1
  python3 -c "
import sgl_kernel, flashinfer, flashinfer.sampling
import sglang.srt.entrypoints.http_server, sglang.bench_offline_throughput
import sglang.srt.model_executor.model_runner, sglang.srt.models.qwen3, sglang.srt.managers.scheduler
import sglang.srt.layers.attention.triton_backend, sglang.srt.layers.attention.flashattention_backend
import sglang, transformers; print('PREFLIGHT_OK sglang', sglang.__version__, 'transformers', transformers.__version__, 'sgl_kernel', sgl_kernel.__version__, 'flashinfer', flashinfer.__version__)" 2>&1 | tail -8
  echo "preflight done at +$(( $(date +%s)-T0 ))s"
  python3 -c "
import sglang_router, zstandard, slime.sglang, slime.sync, torch_memory_saver, megatron.core, mbridge
from slime.sglang.server_args import known_server_flags
flags = known_server_flags('sglang'); print('SLIME_OK', len(flags), 'sglang flags;', '--attention-backend' in flags)" 2>&1 | tail -4
  timeout 60 python3 -m sglang_router.launch_router --help > /dev/null && echo "router OK at +$(( $(date +%s)-T0 ))s" ;;
model4b)
  [ -d /tmp/site/transformers ] || { echo "NO /tmp/site from stage1: the machine was not kept warm"; exit 3; }
  python3 $H/gen_model.py /root/qwen3-4b-rand 0 4b 2>&1 | grep -v shards; du -sh /root/qwen3-4b-rand ;;
keep)
  mkdir -p /root/fo && cp $2/* /root/fo/ && ls -la /root/fo ;;
fa3)
  cat /root/fo/fo.part0 /root/fo/fo.part1 /root/fo/fo.part2 | xz -d -T0 > /tmp/site/sgl_kernel/flash_ops.abi3.so
  echo "$(cat /root/fo/fo.sha256)  /tmp/site/sgl_kernel/flash_ops.abi3.so" | sha256sum -c || exit 5 ;;
bench)
  TAG=$2; OL=$3; TO=$4; shift 4
  rm -f /root/offline_${TAG}_${OL}.jsonl
  timeout $TO python3 -m sglang.bench_offline_throughput --model-path $M --dataset-name random \
    --dataset-path $M/sharegpt_fake.json --random-input-len 128 --random-output-len $OL --num-prompts 256 \
    --random-range-ratio 1.0 --result-filename /root/offline_${TAG}_${OL}.jsonl "$@" > $OUT/bench_${TAG}_${OL}.log 2>&1
  rc=$?
  cp /root/offline_${TAG}_${OL}.jsonl $OUT/ 2>/dev/null
  echo "== bench $TAG out=$OL rc=$rc wall=$(( $(date +%s)-T0 ))s args: $*"
  grep -aE "Load weight end|No module named|Error|Traceback|Benchmark duration|Total (input|generated)|throughput \(tok" \
    $OUT/bench_${TAG}_${OL}.log | grep -v "Decode batch" | cut -c1-300 | tail -14 ;;
client)
  TAG=$2; OL=$3; TO=$4; shift 4
  OFF=/root/offline_${TAG}_${OL}.jsonl; [ -s $OFF ] && OFFARG="--offline-json $OFF" || OFFARG=""
  timeout $TO python3 benchmarks/bench_engine.py --backend sglang --model-path $M --num-engines 1 --num-prompts 256 \
    --input-len 128 --output-len $OL --temperature 0 --decode-floor $OFFARG --json --server-args "$*" $CLIENT_ARGS \
    > $OUT/client_${TAG}_${OL}.json 2> $OUT/client_${TAG}_${OL}.log
  echo "== client $TAG out=$OL rc=$? wall=$(( $(date +%s)-T0 ))s"; cat $OUT/client_${TAG}_${OL}.json; tail -5 $OUT/client_${TAG}_${OL}.log ;;
tests)
  TO=$2; shift 2
  SLIME_TEST_ENGINE=sglang SLIME_TEST_MODEL=$M SLIME_TEST_LOGPROB_ATOL=${ATOL:-0.1} \
  SLIME_TEST_SERVER_ARGS="--enable-metrics --mem-fraction-static 0.4 $*" \
    timeout $TO python3 -m pytest packages/slime-sglang/tests/test_router_group.py \
      packages/slime-sglang/tests/test_weights.py -v -rs --basetemp=/root/pytest 2>&1 | tee $OUT/tests.log | tail -40
  find /root/pytest -name '*.log' -path '*engine_logs*' | head -4 | while read f; do cp $f $OUT/; done ;;
server)
  shift; python3 $H/server_test.py "$@" ;;
weights)
  TO=$2; shift 2
  timeout $TO python3 $H/weight_sync_test.py "$@" > $OUT/weight_sync.log 2>&1
  echo "== weights rc=$? wall=$(( $(date +%s)-T0 ))s"; tail -c 3000 $OUT/weight_sync.log ;;
loop|disagg)
  # slime.train's GRPO loop in one process (--no-ray: no Ray wheels needed) with one stock SGLang engine (#13).
  # loop BACKEND TIMEOUT: colocated on one GPU; the trainer (fsdp | megatron) and the engine share it, weights go by
  #   CUDA IPC into /update_weights_from_tensor, memory is released/resumed around each phase.
  # disagg BACKEND TIMEOUT sync|async: 2 GPUs, trainer on GPU 0, engine on GPU 1, weights by NCCL broadcast
  #   (/init_weights_update_group + /update_weights_from_distributed); train.py or train_async.py.
  MODE=$1; BACKEND=$2; TO=$3; shift 3
  if [ $MODE = loop ]; then NAME=${LOOP_NAME:-loop_$BACKEND}; SCRIPT=train.py; PLACE="--colocate --sglang-mem-fraction-static 0.4"
  else
    LOOP=$1; shift; NAME=disagg_${BACKEND}_$LOOP; SCRIPT=$([ $LOOP = async ] && echo train_async.py || echo train.py)
    PLACE="--rollout-num-gpus 1 --sglang-mem-fraction-static 0.8"
  fi
  python3 -c "from slime.train.demo.task import make_prompts; make_prompts('/root/loop_prompts.jsonl', num_prompts=128)"
  timeout $TO python3 $SCRIPT --no-ray --train-backend $BACKEND --rollout-engine sglang $PLACE \
    --actor-num-gpus-per-node 1 --rollout-num-gpus-per-engine 1 --hf-checkpoint $M \
    --prompt-data /root/loop_prompts.jsonl --label-key label --rollout-batch-size 16 --n-samples-per-prompt 8 \
    --rollout-max-response-len 256 --custom-rm-path slime.train.demo.task:reward_func --num-rollout 4 \
    --lr 1e-6 --use-dynamic-batch-size --max-tokens-per-gpu 16384 \
    --sglang-attention-backend triton --metrics-jsonl $OUT/$NAME.jsonl "$@" > $OUT/$NAME.log 2>&1
  RC=$?
  echo "== $NAME rc=$RC wall=$(( $(date +%s)-T0 ))s"
  [ $RC = 124 ] && echo "== timed out after ${TO}s: a fresh machine's first loop spends ~230 s before step 0 (cold start + engine JIT); give it >= 400 s"
  E=$(ls -t /tmp/slime-engine-*.log 2>/dev/null | head -1); [ -n "$E" ] && grep -v "Decode batch" $E | tail -400 > $OUT/${NAME}_engine.log
  grep -aE "Traceback|Error|\[step" $OUT/$NAME.log | cut -c1-400 | tail -12 ;;
fp8)
  # FP8 rollout (#13 item 5): the engine serves a block-FP8 copy (128x128 blocks, slime.convert), Megatron trains the
  # bf16 weights from --ref-load, every push quantizes them block-wise; TIS on. Compare train_rollout_logprob_abs_diff
  # in $OUT/loop_fp8.jsonl with loop_megatron.jsonl's (bf16 engine).
  TO=$2; shift 2
  rm -rf /root/qwen3-0.6b-fp8
  python3 tools/convert_hf_to_fp8.py --model-dir $M --save-dir /root/qwen3-0.6b-fp8 > $OUT/fp8_convert.log 2>&1 || { tail -5 $OUT/fp8_convert.log; exit 4; }
  LOOP_NAME=loop_fp8 bash $0 loop megatron $TO --hf-checkpoint /root/qwen3-0.6b-fp8 --ref-load $M --use-tis "$@" ;;
*) echo "unknown subcommand $1"; exit 2 ;;
esac
