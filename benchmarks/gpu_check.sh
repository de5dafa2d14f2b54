#!/usr/bin/env bash
# One short check of midigen's CUDA paths on a GPU machine (written for a borrowed H200 with a
# few minutes of device time; runs anywhere). From the repository root:
#
#   bash benchmarks/gpu_check.sh               # python3; log and samples in $OUT (default /tmp/gpu_check)
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_STEPS=4 PY=.venv/bin/python OUT=/tmp/gpuout bash benchmarks/gpu_check.sh
#                                              # a dry run of every command and flag on a CPU machine
#
# What it checks, each step timed and bounded (a failing step is reported and the next one runs;
# the exit status is non-zero if any step failed):
#   1. environment: GPU (nvidia-smi -L), Python, torch, CUDA, the packages midigen needs;
#   2. the CUDA-relevant tests: tests/test_batching.py parametrises every batching test over
#      location "cuda" when CUDA is available; tests/test_train.py's CLI test trains with the
#      default device (auto: cuda there); test_model/test_memory run on the CPU but in this
#      interpreter (torch build of the GPU machine);
#   3. `midigen prepare bach`, then training from a corpus held on the GPU
#      (--location cuda --device cuda, bf16 autocast is automatic on CUDA): a plain GPT, and an
#      xl+knn memory model (contiguous batches, memories on the GPU, exact kNN search there);
#      `--resume` of the GPT run (fused AdamW moments, RNG states, data position on the GPU); then `midigen generate` on cuda from both checkpoints (the memory model over several
#      segments, so write_segment runs) and `midigen evaluate` on cuda;
#   4. batch throughput of the three batching strategies from disk, RAM and the GPU
#      (benchmarks/prepare.py --batching-only);
#   5. bf16 training throughput and MFU of midigen's GPT and x-transformers
#      (benchmarks/model.py --gpu-only; x-transformers is skipped there if it is not importable).
#
# Packages the GPU machine lacks (symusic and its needs; x-transformers and its needs) travel as
# wheels in .whl/ (ignored by git; see the report that made them) and are installed to
# /tmp/site, never into the machine's Python. GPU_CHECK_COMPILE=1 adds a torch.compile training
# run (slow to compile: off by default). GPU_CHECK_DEVICE=cpu runs the device steps on the CPU
# instead (corpus as a CPU tensor); GPU_CHECK_STEPS sets the GPT run's training steps (default 60).
set -euo pipefail

PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_check}
WORK=${WORK:-/tmp/midigen-gpu-check}
DEV=${GPU_CHECK_DEVICE:-cuda}   # the device of steps 3 and 5 (and the corpus location of step 3)
STEPS=${GPU_CHECK_STEPS:-60}    # training steps of the GPT run (the memory model: half)
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
FAILED=()

setup() {
    # (a) wheels of the packages the machine lacks, into /tmp/site (unless this Python has them
    # already, as a dry run's virtualenv does); midigen itself from this checkout, not installed
    if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c "import symusic, x_transformers" 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        rm -rf /tmp/site/test /tmp/site/docs  # stray top-level folders of two wheels (pySmartDL, einx)
        export PYTHONPATH=/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
    else
        export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
    fi

    HAVE_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
    RUN_DEV=1   # can the device steps run here?
    [ "$DEV" = cpu ] || [ "$HAVE_CUDA" = 1 ] || RUN_DEV=0
}

# step NAME SECONDS CMD...: run CMD with a time limit; record a failure and go on
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name ($(date +%T), limit ${limit}s)"
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "=== $name: ok in $((SECONDS - t0)) s"
    else
        echo "=== $name: FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', timed out')) after $((SECONDS - t0)) s"
        FAILED+=("$name")
    fi
}

# a step on $DEV: skipped, saying so, where that is CUDA and there is none
dev_step() {
    if [ "$RUN_DEV" = 1 ]; then
        step "$@"
    else
        echo
        echo "=== $1: skipped (no CUDA here)"
    fi
}

main() {
    setup
    # (b) environment
    echo "=== environment"
    nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
    "$PY" - <<'EOF'
import importlib, sys
import torch
print(f"python {sys.version.split()[0]} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, torch CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
for name in ("numpy", "symusic", "tokenizers", "safetensors", "tensorboard", "tqdm", "hypothesis", "einops", "x_transformers"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '?')} ({m.__file__})")
    except Exception as exc:  # report, don't stop: the steps below say what it breaks
        print(f"  {name}: NOT importable ({type(exc).__name__}: {exc})")
import midigen
print(f"midigen from {midigen.__file__}")
EOF

    # (c) the CUDA-relevant tests (tests needing ../shared/corpus skip themselves)
    step "pytest" 180 "$PY" -m pytest -q -x tests/test_batching.py tests/test_train.py tests/test_model.py \
        tests/test_memory.py -p no:cacheprovider --durations=10

    # (d) prepare the bundled corpus; train on the GPU from a corpus held on the GPU; generate; evaluate
    step "prepare bach" 60 "$PY" -m midigen prepare bach --out "$WORK/bach" -q
    local common=(--data "$WORK/bach" --location "$DEV" --device "$DEV" -q)
    local half=$((STEPS > 1 ? STEPS / 2 : 1)) quarter=$((STEPS > 3 ? STEPS / 4 : 1))
    dev_step "train gpt on $DEV" 90 "$PY" -m midigen train "${common[@]}" --out "$WORK/gpt" \
        --max-steps "$STEPS" --batch-size 32 --seq-len 256 --eval-interval "$half" --eval-batches 8 \
        --warmup-steps $((STEPS / 6)) --lr 1e-3
    # exact resume on the device: optimizer moments (fused AdamW), RNG states, data position
    dev_step "resume gpt on $DEV" 60 "$PY" -m midigen train "${common[@]}" --out "$WORK/gpt" --resume \
        --max-steps $((STEPS + 10)) --batch-size 32 --seq-len 256 --eval-interval "$half" --eval-batches 8 \
        --warmup-steps $((STEPS / 6)) --lr 1e-3
    dev_step "train xl+knn on $DEV" 90 "$PY" -m midigen train "${common[@]}" --out "$WORK/xlknn" --model xl+knn \
        --max-steps "$half" --batch-size 16 --seq-len 64 --eval-interval "$quarter" --eval-batches 8 \
        --warmup-steps $((STEPS / 12)) --lr 1e-3
    if [ "${GPU_CHECK_COMPILE:-0}" = 1 ]; then
        dev_step "train gpt on $DEV, torch.compile" 240 "$PY" -m midigen train "${common[@]}" --out "$WORK/gpt-compiled" \
            --compile --max-steps "$half" --batch-size 32 --seq-len 256 --eval-interval "$half" \
            --eval-batches 4 --warmup-steps $((STEPS / 12))
    fi
    # prompt: the first 8 beats of a chorale; 300 new tokens (several of the memory model's 64-token segments)
    local gen=(--prompt midigen/assets/bach/bwv1.6.mid --prompt-beats 8 --max-tokens 300 --seed 0 --top-p 0.95 --device "$DEV")
    dev_step "generate gpt on $DEV" 45 "$PY" -m midigen generate --checkpoint "$WORK/gpt" --out "$OUT/gen_gpt.mid" \
        --num-samples 1 "${gen[@]}"
    dev_step "generate xl+knn on $DEV" 45 "$PY" -m midigen generate --checkpoint "$WORK/xlknn" --out "$OUT/gen_xlknn.mid" \
        --num-samples 2 "${gen[@]}"
    dev_step "evaluate gpt on $DEV" 60 "$PY" -m midigen evaluate --checkpoint "$WORK/gpt" --data "$WORK/bach" \
        --split test --samples 4 --max-tokens 256 --max-batches 8 --device "$DEV" -q --json "$OUT/eval_gpt.json"
    local tps=4300   # what batching is compared with: measured training tokens/s where there is one
    if [ -f "$WORK/gpt/history.jsonl" ]; then
        cp "$WORK/gpt/history.jsonl" "$OUT/history_gpt.jsonl"
        tps=$("$PY" -c "
import json, sys
h = [json.loads(l) for l in open(sys.argv[1])]
t = sorted(r['train/tokens_per_s'] for r in h if 'train/tokens_per_s' in r)[-20:]  # the fastest 20: warm
print(round(t[len(t) // 2]))" "$WORK/gpt/history.jsonl") || tps=4300
        echo "gpt training on $DEV: ~$tps tokens/s (batch 32 x 256, median of the 20 fastest steps)"
    fi

    # (e) batch throughput: three strategies x disk / RAM / GPU
    local locations=disk,ram
    [ "$HAVE_CUDA" = 1 ] && locations=disk,ram,cuda
    step "batch throughput ($locations)" 60 "$PY" benchmarks/prepare.py --batching-only "$WORK/bach" \
        --locations "$locations" --batches 200 --train-tokens-per-s "$tps"

    # (f) bf16 training throughput and MFU, midigen GPT vs x-transformers (seconds on a GPU)
    dev_step "benchmarks/model.py --gpu-only" 120 "$PY" benchmarks/model.py --gpu-only --steps 30 --warmup 5 --repeat 3

    echo
    if [ ${#FAILED[@]} -eq 0 ]; then
        echo "=== gpu_check: all steps ok"
    else
        echo "=== gpu_check: FAILED: ${FAILED[*]}"
        return 1
    fi
}

main 2>&1 | tee "$OUT/gpu_check.log"
