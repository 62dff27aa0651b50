#!/usr/bin/env bash
# Every GPU test and benchmark, in one run, on a bare GPU machine (no package installs: it uses
# the toolchain and libraries already there). Exits 77 when there is no CUDA device, so it can
# run anywhere; under 8 minutes on one H100/H200.
#   scripts/gpu-check.sh            # build into build-gpu, run the gpu-labelled tests
# What runs: the op tests on the CUDA backend (test_kernels, test_ops --backend cuda; ops the CUDA
# backend lacks are reported as skipped there), then the model tests with NVL_BACKEND=cuda (the
# LM goldens, the batched step, the ViT and the end-to-end VL goldens against the references the
# CPU path matches), then bench_llm on the device. Everything here had never run on a GPU when it
# was written: read the first failure first.
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
rc=0
ctest --test-dir build-gpu --output-on-failure -L gpu || rc=1
for t in tests/llm/test_llm tests/llm/test_step tests/vision/test_vit tests/tokenreduce/test_tokenreduce \
         tests/api/test_engine_e2e; do
  echo "== NVL_BACKEND=cuda $t"
  NVL_BACKEND=cuda timeout 300 "build-gpu/$t" || rc=1
done
echo "== bench_llm on the device (mid shape, synthetic BF16 weights)"
NVL_BACKEND=cuda timeout 240 build-gpu/bench/bench_llm --shape mid --prompt 128 --decode 32 || rc=1
NVL_BACKEND=cuda timeout 240 build-gpu/bench/bench_llm --shape mid --prompt 32 --decode 16 --seqs 1,16 || rc=1
exit $rc
