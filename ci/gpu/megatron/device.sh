#!/bin/bash
# Runs ON THE DEVICE (lent H100/H200), from the repo root, through the device tool's `run`, with `.mwhl` carried
# (see fetch_wheels.sh). Subcommands:
#   train   one GPU: random Qwen3-0.6B, packed 4k micro-batches: tokens/s, 6N-MFU, peak memory  -> $OUT/train.json
#   tp      two GPUs: TP2 (+ sequence parallel) logits vs TP1, TP2 train steps with and without SP  -> $OUT/tp*.json
#   all     both (needs two GPUs for the tp part; it is skipped on one)
#   sweep   one GPU: the train figures at 4k, 8k and 16k tokens per micro-batch    -> $OUT/train_T.json
#   compile one GPU: each decoder layer torch.compile'd (a probe), 4k (profiled) and 16k -> $OUT/train_compiled*.json
#   host    one GPU: cProfile of one 4k step + host-device sync call sites       -> $OUT/train_host*.{json,txt}
#   graphs  one GPU: --train-cuda-graphs: graphed vs eager gradients, then 4k (profiled) / 8k / 16k with graphs and
#           4k eager in the same lease                     -> $OUT/train_graphs*.json, $OUT/train_eager_4096.json
#   levers  one GPU: the step's optional speed-ups one by one at 4k: graphs (profiled) with and without the fused
#           weight-gradient accumulation, eager with and without it and the response-row logits, then the GPU tests
#           -> $OUT/levers_*.json, $OUT/gpu_tests.txt
#   fusions one GPU: Megatron's compiled SwiGLU / bias-dropout-add vs eager (the default without TE)
#           -> $OUT/train_{fused,eager}.json
# `train` also profiles one more step (torch.profiler): the op table in $OUT/train_profile.txt, the top 25 in
# train.json's `profile_top`.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .mwhl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$(ls -d packages/*/src | paste -sd:) PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # KINDS.md: never multicast
B=ci/gpu/megatron/bench_megatron_gpu.py
MODEL=${MODEL:-0.6b}  # MODEL=4b: the Qwen3-4B shape (train / sweep)
C=/tmp/qwen3-$MODEL-rand
O=${OUT:-/tmp/megatron_out}
mkdir -p "$O"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import megatron.core, mbridge, torch; print('megatron-core', megatron.core.__version__, 'torch', torch.__version__)"
python3 $B checkpoint --model $MODEL --save $C > "$O/checkpoint.json" || exit 2
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
case "${1:-all}" in
  train|all) python3 $B train --model $MODEL --checkpoint $C --profile "$O/train_profile.txt" 2> "$O/train.log" \
      | tee "$O/train.json" ;;
  fusions)  # Megatron's compiled SwiGLU + bias-dropout-add against eager (the default without TE), 4k micro-batches
    python3 $B train --model $MODEL --checkpoint $C --fusions 2>> "$O/train.log" | tee "$O/train_fused.json"
    python3 $B train --model $MODEL --checkpoint $C 2>> "$O/train.log" | tee "$O/train_eager.json" ;;
  compile)  # probe (#9): each decoder layer through torch.compile (dynamic shapes), profiled, 4k and 16k
    python3 $B train --model $MODEL --checkpoint $C --compile-layers --profile "$O/train_compiled_profile.txt" \
      2>> "$O/train.log" | tee "$O/train_compiled.json"
    python3 $B train --model $MODEL --checkpoint $C --compile-layers --max-tokens 16384 2>> "$O/train.log" \
      | tee "$O/train_compiled_16384.json" ;;
  host)  # where the host time goes at 4k micro-batches: cProfile of one step, and the host-device syncs per call site
    python3 $B train --model $MODEL --checkpoint $C --host-profile "$O/train_host_profile.txt" 2>> "$O/train.log" \
      | tee "$O/train_host.json" ;;
  graphs)  # issue #9: CUDA graphs over static-shape micro-batches, against eager on the same host
    python3 $B train --model $MODEL --checkpoint $C --cuda-graphs --graph-check \
      --profile "$O/train_graphs_profile.txt" 2>> "$O/train.log" | tee "$O/train_graphs.json"
    python3 $B train --model $MODEL --checkpoint $C 2>> "$O/train.log" | tee "$O/train_eager_4096.json"
    for T in 8192 16384; do
      python3 $B train --model $MODEL --checkpoint $C --cuda-graphs --max-tokens $T 2>> "$O/train.log" \
        | tee "$O/train_graphs_$T.json"
    done ;;
  levers)  # issue #9: slime.megatron.wgrad_fusion and slime.megatron.response_rows, A/B in one lease
    python3 $B train --model $MODEL --checkpoint $C --cuda-graphs --graph-check \
      --profile "$O/levers_graphs_profile.txt" 2>> "$O/train.log" | tee "$O/levers_graphs.json"
    python3 $B train --model $MODEL --checkpoint $C --cuda-graphs --no-wgrad-fusion 2>> "$O/train.log" \
      | tee "$O/levers_graphs_no_wgrad_fusion.json"
    python3 $B train --model $MODEL --checkpoint $C 2>> "$O/train.log" | tee "$O/levers_eager.json"
    python3 $B train --model $MODEL --checkpoint $C --no-wgrad-fusion --full-logits 2>> "$O/train.log" \
      | tee "$O/levers_eager_neither.json"
    PYTHONPATH=$PYTHONPATH:testing python3 -m pytest -q -p no:cacheprovider \
      packages/slime-megatron/tests/test_{vocab_parallel,fused_elementwise}.py \
      packages/slime-megatron/tests/test_{core_attention_gpu,host_to_device,select_rows,wgrad_fusion}.py \
      > "$O/gpu_tests.txt" 2>&1; tail -3 "$O/gpu_tests.txt" ;;
  sweep)  # micro-batch token budgets: where the step's throughput saturates (issue #9)
    for T in 4096 8192 16384; do
      python3 $B train --model $MODEL --checkpoint $C --max-tokens $T 2>> "$O/train.log" | tee "$O/train_$T.json"
    done ;;
esac
case "${1:-all}" in
  tp|all)
    if [ "$GPUS" -lt 2 ]; then echo '{"tp": "skipped: one GPU"}'; exit 0; fi
    python3 $B logits --seq-len 256 --tp 1 --checkpoint $C --save /tmp/logits_tp1.pt 2> "$O/tp.log"
    torchrun --nproc-per-node 2 $B logits --seq-len 256 --tp 2 --checkpoint $C --compare /tmp/logits_tp1.pt \
      2>> "$O/tp.log" | tee "$O/tp_logits.json"
    torchrun --nproc-per-node 2 $B logits --seq-len 256 --tp 2 --sequence-parallel --checkpoint $C \
      --compare /tmp/logits_tp1.pt 2>> "$O/tp.log" | tee "$O/tp_sp_logits.json"
    torchrun --nproc-per-node 2 $B train --tp 2 --sequence-parallel --checkpoint $C \
      2>> "$O/tp.log" | tee "$O/tp_train.json"
    # without sequence parallelism: the column-parallel linears' fused weight gradients with the input-gradient
    # all-reduce, and the response-row logits (they need the full sequence on every TP rank)
    torchrun --nproc-per-node 2 $B train --tp 2 --checkpoint $C 2>> "$O/tp.log" | tee "$O/tp_train_nosp.json"
    ;;
esac
tail -5 "$O"/*.log
