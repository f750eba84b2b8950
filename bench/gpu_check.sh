#!/usr/bin/env bash
# The prepared GPU check (one lent GPU, under 10 minutes): the test suite on CUDA, FiLM's overhead and the
# speed settings as ratios, and a paper-profile training of the proposed network for a fixed time with its
# scores. Run from the repository root: `bash bench/gpu_check.sh [MINUTES]`; the log goes to
# ${OUT:-results/gpu_check}/gpu_check.log. Needs torch with CUDA and the packages of requirements.lock.
set -uo pipefail
MINUTES=${1:-4}
OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 FILMMTL_CACHE=${FILMMTL_CACHE:-/tmp/filmmtl-cache}
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  echo "== 1. test suite (the notebooks excluded: their smoke profile is the same on any device)"
  timeout 240 $PY -m pytest -q -x tests -p no:cacheprovider
  echo "== 2. FiLM overhead and speed settings"
  timeout 90 $PY bench/film_overhead.py --size 128 --batch 32 --repeats 10
  timeout 120 $PY bench/throughput.py --profiles paper --repeats 10 --settings
  echo "== 3. paper profile, proposed network, ${MINUTES} min of training, then its scores"
  timeout $((MINUTES * 60 + 120)) $PY bench/timed_training.py --minutes "$MINUTES" --out "$OUT"
} 2>&1 | tee "$OUT/gpu_check.log"
