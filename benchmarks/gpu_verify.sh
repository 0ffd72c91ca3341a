#!/usr/bin/env bash
# The TensorRT issue's GPU verification in one command, on a machine with an NVIDIA GPU:
#   benchmarks/gpu_verify.sh [gpu_verify options, e.g. --weights osnet_x0_25=w.pth --calib crops/]
# 1. preflight (GPU, tensorrt, cuda-python, a CUDA build of torch) - stops with what is missing;
# 2. the TensorRT tests, GPU half included (tests/test_tensorrt*.py);
# 3. engine builds + parity + fidelity + latency vs PyTorch eager -> benchmarks/results/tensorrt/gpu_verify.{json,png,md}
# Env: PYTHON (default .venv/bin/python, else python3); WHEELHOUSE=dir installs tensorrt + cuda-python from local
# wheels first (offline machines; never touches torch); OUT (default benchmarks/results/tensorrt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${OUT:-benchmarks/results/tensorrt}"
mkdir -p "$OUT"
if [ -n "${WHEELHOUSE:-}" ]; then
  "$PY" -m pip install -q --no-index --find-links "$WHEELHOUSE" tensorrt cuda-python
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.txt" || true
"$PY" -m osnet_edge.benchmarks.gpu_verify --preflight
set +e
"$PY" -m pytest -q -ra tests/test_tensorrt.py tests/test_tensorrt_gpu.py 2>&1 | tee "$OUT/pytest.txt"
tests_rc=${PIPESTATUS[0]}
"$PY" -m osnet_edge.benchmarks.gpu_verify --out "$OUT" "$@"
verify_rc=$?
set -e
echo "tests rc=$tests_rc, verification rc=$verify_rc; records in $OUT/gpu_verify.{json,png,md}"
exit $(( tests_rc != 0 || verify_rc != 0 ))
