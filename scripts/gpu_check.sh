#!/usr/bin/env bash
# Runs the real training script on a CUDA GPU with a tiny model built on the spot (no download, no account):
# bf16, gradient checkpointing, batched generation. Prints the time of each phase and the peak GPU memory;
# exits non-zero on any failure. Needs a CUDA build of torch in the project's venv (make setup, then e.g.
# `.venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128` on that machine).
#
#   scripts/gpu_check.sh [--steps N] [--rows N]      # --allow-cpu runs it without a GPU (checks the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "gpu_check: FAIL: $PY not found: run 'make setup' first (or set PYTHON=...)" >&2
  exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
exec "$PY" scripts/gpu_check.py "$@"
