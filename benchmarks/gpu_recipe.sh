#!/usr/bin/env bash
# The bundled model's recipe at GPU size, as one bounded run (issue 14, item 4): written for a
# borrowed H200 with ~10 minutes of device time; runs anywhere. From the repository root:
#
#   bash benchmarks/gpu_recipe.sh                # python3; log, history and results in $OUT (default /tmp/gpu_recipe)
#   RECIPE_DEVICE=cpu RECIPE_STEPS=2 RECIPE_BATCH=2 RECIPE_SAMPLES=2 PY=.venv/bin/python OUT=/tmp/gr bash benchmarks/gpu_recipe.sh
#                                                # a dry run of every command and flag on a CPU machine
#
# Steps, each timed and bounded (a failing step is reported and the next one runs):
#   1. `midigen prepare bach` (parts and velocity: the defaults);
#   2. `midigen train --recipe bach-gpu` (midigen/assets/recipes/bach-gpu.json: 8 layers, width
#      512, 8 heads, sounding embeddings, batches of 64 x 512 from a corpus held on the GPU, bf16
#      autocast, 3,000 steps, the bach recipe's augmentation), cut at RECIPE_TRAIN_SECONDS
#      (default 420) by SIGTERM, which saves `latest/` (and `best/` holds the best evaluation);
#   3. `midigen evaluate` on the test split with 38 continuations of 8-beat prompts at the bundled
#      model's sampling (top-p 0.99), on the GPU, into eval.json: the numbers to set beside the
#      bundled model's (README, RESULTS "What is sounding");
#   4. `midigen export-model` in float16: its size against the 25 MB a bundled model may take
#      (26M parameters: 52 MB, so this size is for GPU users, not for the package).
# A CPU dry run (below) checks every command and flag; its training is far too short to mean anything.
set -uo pipefail

PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_recipe}
WORK=${WORK:-/tmp/midigen-gpu-recipe}
DEV=${RECIPE_DEVICE:-cuda}
STEPS=${RECIPE_STEPS:-3000}
TRAIN_SECONDS=${RECIPE_TRAIN_SECONDS:-420}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"
FAILED=()

step() {  # step NAME SECONDS CMD...: run CMD with a time limit; record a failure and go on
    local name=$1 limit=$2 rc=0 t0=$SECONDS
    shift 2
    echo
    echo "=== $name ($(date +%T), limit ${limit}s)"
    timeout --signal=TERM --kill-after=30 "$limit" "$@" || rc=$?
    if [ "$rc" -eq 0 ] || { [ "$name" = train ] && [ "$rc" -eq 124 ]; }; then
        echo "=== $name: ok in $((SECONDS - t0)) s$([ "$rc" -eq 124 ] && echo ' (stopped at its time limit; latest/ saved)')"
    else
        echo "=== $name: FAILED (exit $rc) after $((SECONDS - t0)) s"
        FAILED+=("$name")
    fi
}

main() {
    nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
    "$PY" -c "import torch, midigen; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'midigen', midigen.__file__)"
    step prepare 60 "$PY" -m midigen prepare bach --out "$WORK/bach" -q
    local loc=$DEV
    [ "$DEV" = cpu ] && loc=ram
    step train "$TRAIN_SECONDS" "$PY" -m midigen train --recipe bach-gpu --data "$WORK/bach" --out "$WORK/run" \
        --device "$DEV" --location "$loc" --max-steps "$STEPS" --eval-interval $((STEPS > 6 ? STEPS / 6 : 1)) \
        ${RECIPE_BATCH:+--batch-size "$RECIPE_BATCH"} -q
    cp "$WORK/run/history.jsonl" "$OUT/history.jsonl" 2>/dev/null
    step evaluate 150 "$PY" -m midigen evaluate --checkpoint "$WORK/run" --data "$WORK/bach" --split test \
        --samples "${RECIPE_SAMPLES:-38}" --prompt-beats 8 --top-p 0.99 --device "$DEV" -q --json "$OUT/eval.json"
    step export 60 "$PY" -m midigen export-model --checkpoint "$WORK/run" --out "$OUT/bach-gpu-fp16"
    du -sh "$OUT/bach-gpu-fp16" 2>/dev/null
    rm -f "$OUT/bach-gpu-fp16/model.safetensors"  # (the numbers come back, not the weights)
    echo
    if [ ${#FAILED[@]} -eq 0 ]; then echo "=== gpu_recipe: all steps ok"; else echo "=== gpu_recipe: FAILED: ${FAILED[*]}"; return 1; fi
}

main 2>&1 | tee "$OUT/gpu_recipe.log"
