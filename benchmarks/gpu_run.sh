#!/usr/bin/env bash
# The GPU paths on a CUDA machine: demo data → spectrograms → train → evaluate → select → explain,
# with the stage scripts themselves (no dvc: a GPU box may lack the CLI), timing each stage.
# Usage: bash benchmarks/gpu_run.sh [results-dir]      (PYTHONPATH must reach src/)
set -euo pipefail
out=${1:-benchmarks/results/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" | tee -a "$out/gpu.txt"
"$py" - <<'PY'
from pathlib import Path
from quakeshap.config import load_params
from quakeshap.demo import write_demo_dataset
write_demo_dataset(load_params("params.yaml").data.demo, Path("data/raw"))
PY
for stage in spectrograms train evaluate select_traces explain; do
  start=$(date +%s.%N)
  "$py" stages/$stage.py
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v n="$stage" 'BEGIN { printf "%s %.1f s\n", n, e - s }' | tee -a "$out/stage_seconds.txt"
done
cp reports/metrics/*.json "$out/"
cp reports/train/history.csv "$out/"
