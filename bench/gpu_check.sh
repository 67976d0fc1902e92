#!/usr/bin/env bash
# The prepared GPU check of issue 16, in one command: `bash bench/gpu_check.sh [--results DIR]`.
#
# Population of 64 proxies vs one after another, bf16 vs fp32 losses, difficulty scoring and embedding
# throughput, k-means of 200,000 vectors (bench/bench_gpu.py says exactly what). Writes bench/results/gpu.json
# and regenerates bench/RESULTS.md. Sized for under 8 minutes on one NVIDIA GPU once the project's own set-up
# (`bash scripts/setup.sh`, which installs the CUDA torch where a GPU is present) is done; it runs that set-up
# first when .venv is missing. Without a GPU the same steps run on the CPU at smaller sizes, and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    bash scripts/setup.sh
fi
.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no GPU: CPU sizes")'
# 9 minutes at most: a hung device must not hold the machine (the check itself takes about 4 on a GPU).
exec timeout 540 .venv/bin/python -m bench.run gpu "$@"
