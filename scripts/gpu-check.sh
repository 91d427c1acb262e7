#!/usr/bin/env bash
# The GPU path in one short call, for a lent GPU machine (no network, its own
# python3 with CUDA torch; no pydantic, Ray, MLflow or Optuna). From the repository
# root:
#
#   scripts/gpu-wheels.sh              # once, on a networked machine: wheels into .whl/
#   scripts/gpu-check.sh               # on the GPU machine (.whl/ travels with the tree)
#   scripts/gpu-check.sh --cpu-rehearsal   # here: the same steps, CUDA ones skipped
#
# Steps, each under its own time limit and all within GPU_CHECK_BUDGET_S (default
# 450 s, so the whole call fits 8 minutes), every line also written to the results
# folder ($OUT when set, else gpu-check-results/):
#   wheels      install the carried wheels this Python lacks into a temporary folder
#   nvidia-smi  the card as found
#   probe       python/torch/CUDA/cuDNN versions, rrn_core imported without Ray,
#               MLflow or Optuna, one 8192^3 bf16 matmul's TFLOP/s (the reference)
#   pytest-gpu  `pytest -m gpu` (2-GPU tests skip with a reason; tests/orchestration's
#               one needs Ray and is not collected)
#   throughput  bench/gpu_throughput.py at the VOC config (ResNet-101, crop 512,
#               batch 8 + 2x8) for rrn, cps, supervised in bf16 and fp32, channels_last
#   train       configs/synth.yaml on cuda with AMP bf16 and channels_last, prepared as
#               `rrn train` prepares it: a straight run, and one cut after its first
#               evaluation then resumed from its checkpoint by `python -m rrn_core
#               train`, which must end where the straight one did (train_resume.py)
#   summary     one Markdown table of it all (summary.md), printed last
# Results (at most 8 files, as a lent machine returns): gpu-check.log, steps.tsv,
# env.json, pytest-gpu.xml, gpu_throughput.json, train_resume.json, summary.md.
# Exit status 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
case "${1:-}" in
  --cpu-rehearsal) MODE=cpu ;;
  "") ;;
  *) echo "usage: scripts/gpu-check.sh [--cpu-rehearsal]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
RESULTS=${OUT:-gpu-check-results}
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd)
LOG=$RESULTS/gpu-check.log
: >"$LOG"
: >"$RESULTS/steps.tsv"
BUDGET=${GPU_CHECK_BUDGET_S:-450}
START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rrn-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
failed=0

# step NAME LIMIT_S COMMAND...: run it under `timeout` (the whole process group),
# capped by what is left of the budget; output to the console and the log.
step() {
  local name=$1 limit=$2 left rc status t0
  shift 2
  left=$((BUDGET - (SECONDS - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "=== $name: not run, the ${BUDGET}s budget is spent" | tee -a "$LOG"
    printf '%s\tnot run (budget spent)\t0\n' "$name" >>"$RESULTS/steps.tsv"
    failed=1
    return
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out after ${limit}s"; failed=1 ;;
    *) status="failed (exit $rc)"; failed=1 ;;
  esac
  echo "=== $name: $status in $((SECONDS - t0))s" | tee -a "$LOG"
  printf '%s\t%s\t%s\n' "$name" "$status" $((SECONDS - t0)) >>"$RESULTS/steps.tsv"
}

skip() {  # skip NAME REASON
  echo "=== $1: skipped ($2)" | tee -a "$LOG"
  printf '%s\tskipped (%s)\t0\n' "$1" "$2" >>"$RESULTS/steps.tsv"
}

echo "rrn GPU check, mode $MODE, python $(command -v "$PY"), results in $RESULTS" | tee -a "$LOG"
if [ "$MODE" = cpu ]; then
  DEVICE=cpu
  step wheels 60 "$PY" scripts/gpu_check/install_wheels.py .whl "$WORK/site" --rehearsal
else
  DEVICE=cuda
  step wheels 60 "$PY" scripts/gpu_check/install_wheels.py .whl "$WORK/site"
fi
# The wheels' folder goes on the path only where this Python can import it (the
# rehearsal's Python may not be the 3.12 they are built for).
[ -e "$WORK/site/USABLE" ] && export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH#"$ROOT"}"

if [ "$MODE" = cpu ]; then skip nvidia-smi "CPU rehearsal"; else step nvidia-smi 30 nvidia-smi; fi
step probe 90 "$PY" scripts/gpu_check/probe.py --device $DEVICE --json "$RESULTS/env.json"

# tests/orchestration imports Ray and MLflow (its one CUDA test runs a Ray trial);
# tests/deploy needs the Kubernetes tools: neither is collected here.
step pytest-gpu 200 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests \
  --ignore=tests/orchestration --ignore=tests/deploy --junitxml="$RESULTS/pytest-gpu.xml"

if [ "$MODE" = cpu ]; then
  BENCH=(--tiny --device cpu --threads 1)
else
  BENCH=(--device cuda --backbone resnet101 --crop 512 --batch 8 --steps 8 --warmup 3)
fi
step throughput 200 "$PY" bench/gpu_throughput.py "${BENCH[@]}" --methods rrn cps supervised \
  --precisions bf16 fp32 --gpus 1 --no-pipeline --json "$RESULTS/gpu_throughput.json"

if [ "$MODE" = cpu ]; then
  TRAIN=(--device cpu --iters 2 --every 1 --images 8)
else
  TRAIN=(--device cuda --iters 40 --every 20)
fi
step train 150 "$PY" scripts/gpu_check/train_resume.py "${TRAIN[@]}" --amp bf16 \
  --json "$RESULTS/train_resume.json"

BUDGET=$((BUDGET + 30)) step summary 30 "$PY" scripts/gpu_check/summary.py "$RESULTS"
echo "done in $((SECONDS - START))s: $([ $failed = 0 ] && echo 'every step passed' || echo 'some steps FAILED')" \
  | tee -a "$LOG"
exit $failed
