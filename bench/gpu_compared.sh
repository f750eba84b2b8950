#!/usr/bin/env bash
# The prepared GPU job for experiments 2 and 3 (issue 12): every compared network trained at DRAWS draws
# per unit of sampling weight (course profile: 200, where the proposed network still improves; 1200 = 6x,
# 16,800 steps with the mixes, 13,200 without), all at once on one GPU, Piggyback's two bases first.
# Each run checkpoints every 500 steps, so a second call with the same OUT resumes where the first stopped.
# Then each finished network is exported (fp16, with its command) into $OUT/checkpoints, ready to replace
# data/checkpoints after `python -m filmmtl evaluate` and notebooks 03 and 04 have been looked at.
# Run from the repository root: `bash bench/gpu_compared.sh [DRAWS]`; log: $OUT/gpu_compared.log.
set -uo pipefail
DRAWS=${1:-1200}
OUT=${OUT:-results/gpu_compared}
PY=${PY:-python3}
PROFILE=${PROFILE:-course}  # smoke: a seconds-long rehearsal of this script on a CPU
RUNS="$OUT/runs"
mkdir -p "$RUNS" "$OUT/checkpoints"
export PYTHONUNBUFFERED=1
train() {  # recipe: train (or resume) it into $RUNS, its own log beside it
  local resume=""
  [ -f "$RUNS/$1.pt" ] && resume="--resume"
  $PY -m filmmtl train --recipe "$1" --profile "$PROFILE" --set comparison_draws="$DRAWS" --out "$RUNS/$1.pt" \
    --quiet $resume >"$RUNS/$1.log" 2>&1 || echo "FAILED: $1 (see $RUNS/$1.log)"
}
{
  date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  bases="base_completion base_segmentation"
  others="proposed_compared method1 method2 encin sgn sgn_bias single sharedenc"
  base_pids=""
  for r in $bases; do train "$r" & base_pids="$base_pids $!"; done
  for r in $others; do train "$r" & done
  wait $base_pids  # Piggyback trains on its frozen base
  for r in piggyback1 piggyback2; do train "$r" & done
  wait
  for r in $bases $others piggyback1 piggyback2; do
    if [ -f "$RUNS/$r.json" ]; then
      $PY -m filmmtl export --checkpoint "$RUNS/$r.pt" --out "$OUT/checkpoints/$r.pt" && tail -1 "$RUNS/$r.log"
    else
      echo "not finished: $r"
    fi
  done
  date -u
} 2>&1 | tee -a "$OUT/gpu_compared.log"
