#!/usr/bin/env bash
# The compared networks of experiments 2 and 3 (issue 12) trained at DRAWS draws per unit of sampling weight
# (default 1200, the course profile's own since 2026-12-02: 16,800 steps with the mixes, 13,200 without;
# the shipped ones were made by this script), Piggyback's two bases first. On a GPU all at once; on a CPU one after another
# (PARALLEL=0, the default without nvidia-smi: one run with both cores made 1.6x the steps per minute of
# two one-core runs side by side, 2026-12-01). Each run checkpoints every 500 steps into $OUT/train, so a
# second call with the same OUT resumes where the first stopped (also in another session, given $OUT/train).
# A finished network is exported (fp16, with its command and wall time) into $OUT/checkpoints and skipped
# afterwards; copy them over data/checkpoints after `python -m filmmtl evaluate` and notebooks 03 and 04.
# Run from the repository root: `bash bench/train_compared.sh [DRAWS]`; log: $OUT/train_compared.log.
# A workspace that does not outlive the session: `python bench/park_runs.py park $OUT data/training/NAME` before it
# ends (committed), `... unpark data/training/NAME $OUT` in the next one, then this script again.
# SET=design trains the same networks under experiment 1's design and recipe instead (recipes NAME_design,
# each drawing every task as often as the experiment-1 network: DRAWS does not apply), into runs/compared_design.
set -uo pipefail
DRAWS=${1:-1200}
SET=${SET:-paper}
if [ "$SET" = design ]; then SUFFIX=_design; OUT=${OUT:-runs/compared_design}; else SUFFIX=""; OUT=${OUT:-results/compared_$DRAWS}; fi
PY=${PY:-python3}
PROFILE=${PROFILE:-course}  # smoke: a seconds-long rehearsal of this script on a CPU
if command -v nvidia-smi >/dev/null; then PARALLEL=${PARALLEL:-1}; else PARALLEL=${PARALLEL:-0}; fi
RUNS="$OUT/train"
mkdir -p "$RUNS" "$OUT/checkpoints"
export PYTHONUNBUFFERED=1
train() {  # recipe: train (or resume) it into $RUNS, its own log beside it, then export it
  local resume="" name="$1$SUFFIX"
  set -- "$name"
  [ -f "$OUT/checkpoints/$1.pt" ] && { echo "already exported: $1"; return; }
  [ -f "$RUNS/$1.pt" ] && resume="--resume"
  $PY -m filmmtl train --recipe "$1" --profile "$PROFILE" --set comparison_draws="$DRAWS" --out "$RUNS/$1.pt" \
    --quiet $resume >>"$RUNS/$1.log" 2>&1 || { echo "FAILED: $1 (see $RUNS/$1.log)"; return; }
  $PY -m filmmtl export --checkpoint "$RUNS/$1.pt" --out "$OUT/checkpoints/$1.pt" && tail -1 "$RUNS/$1.log"
}
{
  date -u; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  bases="base_completion base_segmentation"
  others="method1 method2 encin sgn sgn_bias single sharedenc"
  [ "$SET" = design ] || others="proposed_compared $others"  # the design's proposed network is experiment 1's
  if [ "$PARALLEL" = 1 ]; then
    base_pids=""
    for r in $bases; do train "$r" & base_pids="$base_pids $!"; done
    for r in $others; do train "$r" & done
    wait $base_pids  # Piggyback trains on its frozen base
    for r in piggyback1 piggyback2; do train "$r" & done
    wait
  else
    for r in $bases $others piggyback1 piggyback2; do train "$r"; done
  fi
  ls "$OUT/checkpoints"
  date -u
} 2>&1 | tee -a "$OUT/train_compared.log"
