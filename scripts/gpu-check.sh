#!/usr/bin/env bash
# Every GPU test and benchmark, in one run, on a bare GPU machine (no package installs: it uses
# the toolchain and libraries already there). Exits 77 when there is no CUDA device, so it can
# run anywhere; under 8 minutes on one H100/H200.
#   scripts/gpu-check.sh            # build into build-gpu, run the gpu-labelled tests
# What runs today: the op tests on the CUDA backend (test_kernels, test_ops --backend cuda);
# ops the CUDA backend lacks are reported as skipped by those tests.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no CUDA device (nvidia-smi finds none): skipped"
  exit 77
fi
nvidia-smi -L
JOBS=$(nproc 2>/dev/null || echo 4)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DNANOVL_CUDA=ON ${NANOVL_CMAKE_ARGS:-} || exit 1
cmake --build build-gpu -j "$JOBS" || exit 1
ctest --test-dir build-gpu --output-on-failure -L gpu
