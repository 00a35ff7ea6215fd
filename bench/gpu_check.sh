#!/usr/bin/env bash
# GPU check for completiond: one run, under 10 minutes, nothing downloaded at run time.
#   1. the CUDA tests of tests/test_distributed.py (a CUDA training run whose exported model
#      passes the parity check; NCCL DDP when there are two GPUs)
#   2. bench/scaling.py, one table:
#      - PyTorch/ONNX parity of a model trained on the GPU: torch on CUDA (fp32, TF32 off) vs
#        onnxruntime on the CPU and with the CUDA provider
#      - training throughput (chars/s): CPU with 1, 2 and 4 processes (DDP, gloo) vs the GPU
#      - serving latency (keystroke, beam step, cold prefix) and batch throughput through the
#        daemon's engine (OnnxEngine) with EngineConfig(provider="cpu") vs provider="cuda"
#
# Assumes, done beforehand (with network access), in this checkout:
#   make install                                       # .venv with the package and dev tools
#   .venv/bin/pip uninstall -y onnxruntime && .venv/bin/pip install -e '.[cuda]'
#   and a CUDA build of torch==2.13.0 in .venv (PyPI's default Linux wheel; the "+cpu" build
#   sees no GPU)
# Without an NVIDIA GPU it prints the CPU rows, says so, and exits 0.
#
# Usage: bench/gpu_check.sh [bench/scaling.py options, e.g. --seconds 20 --nproc 1 8]
#        PYTHON=/path/to/python bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "no NVIDIA GPU (nvidia-smi is missing or lists none): the GPU rows will be empty"
fi
"$PYTHON" -c 'import torch, onnxruntime as ort; print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}), GPU visible: {torch.cuda.is_available()}; onnxruntime {ort.__version__}: {ort.get_available_providers()}")' || exit 1

echo
echo "== CUDA tests"
timeout 180 "$PYTHON" -m pytest -q -rs tests/test_distributed.py -k "cuda or gpu" -p no:cacheprovider
tests=$?
if [ "$tests" -eq 5 ]; then tests=0; fi  # 5: nothing collected

echo
echo "== scaling"
timeout 400 "$PYTHON" bench/scaling.py --seconds 30 --nproc 1 2 4 "$@"
bench=$?

[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
