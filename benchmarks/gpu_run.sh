#!/usr/bin/env bash
# The GPU paths on a CUDA machine: download (the demo data, as params.yaml's data.source says) →
# spectrograms → train → evaluate → select → explain, each stage run as its module (no dvc: a
# GPU box may lack the CLI), timed.
# Usage: bash benchmarks/gpu_run.sh [results-dir]   (from the repository root, quakeshap installed)
set -euo pipefail
out=${1:-benchmarks/results/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" | tee -a "$out/gpu.txt"
for stage in download spectrograms train evaluate select explain; do
  start=$(date +%s.%N)
  "$py" -m quakeshap.stages.$stage
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v n="$stage" 'BEGIN { printf "%s %.1f s\n", n, e - s }' | tee -a "$out/stage_seconds.txt"
done
cp reports/metrics/*.json reports/train/*.csv "$out/"
