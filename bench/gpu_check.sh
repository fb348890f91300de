#!/usr/bin/env bash
# The GPU figures of issues #15 and #21, in one prepared script (estimated 9 minutes on one H100; not yet run):
#   1. GPT-2 124M at B=16, T=1024, bf16: tokens/s, MFU and peak memory, eager and torch.compile, ours against
#      transformers' GPT2LMHeadModel in the same process (targets: MFU >= 50% compiled on an H100, ours >= 1.0x);
#   2. 30 steps of the seed preset on one process (derived accumulation: 36 micro-batches of 16 x 1024), per-step
#      time, tokens/s and MFU read back from the run's TensorBoard logs;
#   3. the full HellaSwag validation pass (10,042 examples) with a 124M model (random weights: same time);
#   4. GPT-2 124M and the 350M preset's shape (micro-batch 16 x 1024, with and without activation checkpointing):
#      step time, MFU, measured peak (torch.cuda.max_memory_allocated) against the memory planner, and the largest
#      micro-batch that runs for 124M and 350M against the planner's answer for this card; the plan of the 350M
#      preset on this card as scripts/plan.py prints it.
# Everything is offline: the corpus and HellaSwag come from DATA_DIR (default ../shared/data).
#
#   bash bench/gpu_check.sh [OUT_DIR]          # on the GPU machine; tables in OUT_DIR/*.md, then copy to RESULTS.md
#   SMOKE=1 bash bench/gpu_check.sh /tmp/gc    # the same steps with tiny sizes, to check the script on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/gpu_check_out}
DATA_DIR=${DATA_DIR:-../shared/data}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

if [ "$SMOKE" = 1 ]; then
  THROUGHPUT_ARGS=(--smoke --steps 1)
  PRESET=configs/cpu-tiny.yaml
  STEPS=6
  RUN_ARGS=(--eval_every 3 --eval_tokens 2048)
  HELLASWAG_ARGS=(--limit 16 --batch_examples 8)
  MEMORY_ARGS=(--smoke --steps 1)
else
  THROUGHPUT_ARGS=(--gpu_only --steps 10)
  PRESET=configs/gpt2-124m-seed.yaml
  STEPS=30
  # The sample corpus is ~1M tokens: a 65,536-token validation split (the preset's 983,040 would take most of it).
  RUN_ARGS=(--eval_every 25 --eval_tokens 65536 --mixed_precision bf16 --compile)
  HELLASWAG_ARGS=(--limit 0 --random_124m --batch_examples 8)
  MEMORY_ARGS=(--steps 5)
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; \
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee "$OUT/machine.txt"

echo "== 1. model throughput" >&2
python bench/model_throughput.py "${THROUGHPUT_ARGS[@]}" | tee "$OUT/throughput.md"

echo "== 2. $STEPS steps of $PRESET" >&2
python scripts/prepare_data.py --files "$DATA_DIR/fineweb_edu_sample150.jsonl" --output_dir "$OUT/data" \
  --shard_tokens 1000000 --val_tokens 65536 --no_progress
python scripts/pretrain.py --config "$PRESET" --data "$OUT/data" --output_dir "$OUT/seed_steps" \
  --max_steps "$STEPS" --hellaswag_every 0 --sample_every 0 --save_every 0 --no_progress_bar \
  "${RUN_ARGS[@]}" > "$OUT/seed_steps.log" 2>&1 || { tail -40 "$OUT/seed_steps.log"; exit 1; }
tail -5 "$OUT/seed_steps.log"
python bench/run_step_times.py "$OUT/seed_steps" --skip 5 | tee "$OUT/seed_steps.md"

echo "== 3. HellaSwag pass" >&2
python bench/eval_throughput.py --hellaswag "$DATA_DIR/hellaswag_val_full_preprocessed.jsonl" \
  --val_tokens 65536 "${HELLASWAG_ARGS[@]}" | tee "$OUT/hellaswag.md"

echo "== 4. larger models: step time, MFU, peak memory against the planner, largest micro-batch" >&2
python bench/gpu_memory.py "${MEMORY_ARGS[@]}" | tee "$OUT/memory.md"
python scripts/plan.py --config configs/gpt2-350m.yaml --accelerate_config configs/accelerate/ddp-8gpu.yaml \
  --num_processes 1 | tee "$OUT/plan_350m.txt" || true  # exit 1: does not fit
echo "done: tables in $OUT" >&2
