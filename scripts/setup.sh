#!/usr/bin/env bash
# One-time (idempotent) set-up: a virtual environment in .venv with curamix and its pinned
# dependencies. torch: a GPU user's own torch is kept; on a machine without an NVIDIA GPU the
# CPU build of torch 2.13.0 is installed before anything else can pull the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${CURAMIX_VENV:-.venv}
EXTRAS=${1:-}

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "curamix needs Python 3.11+"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" install -q "torch==2.13.0"                 # CUDA build from the index
  elif [ -n "${CURAMIX_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" install -q "torch==2.13.0" --index-url "$CURAMIX_TORCH_INDEX"   # e.g. PyTorch's CPU index
  else
    # Where a local CPU wheel is on pip's find-links (as on our build machines), the +cpu local
    # version wins over the index's CUDA build; elsewhere set CURAMIX_TORCH_INDEX to a CPU index.
    "${PIP[@]}" install -q "torch==2.13.0"
  fi
fi
"${PIP[@]}" install -q -e ".${EXTRAS:+[$EXTRAS]}"
"$VENV/bin/python" -c 'import torch, dagster, polars; print(f"curamix ready: torch {torch.__version__}, dagster {dagster.__version__}, polars {polars.__version__}")'
