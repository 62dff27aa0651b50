#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan; the libraries under test instrumented
# with -fsanitize=fuzzer-no-link, CMakeLists.txt) and runs each for a bounded time from its seed
# corpus (tests/fuzz/corpus/<harness>/, plus ../shared/media when present), in a working corpus
# under build-fuzz/corpus/ that grows from run to run. Prints per harness the coverage (libFuzzer's
# cov: edges, ft: features) and the corpus size, and fails when a harness crashes, does not build,
# or reaches less coverage than its floor in tests/fuzz/coverage_floor.txt. A crash leaves the input
# in build-fuzz/crashes/ to be added to tests/data/media/fuzz-regressions/.
#   tests/fuzz/run_short.sh [seconds per harness, default 20]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-20}"
command -v clang >/dev/null || { echo "run_short.sh: clang not installed, fuzzing skipped"; exit 0; }
CC=clang cmake -S . -B build-fuzz -DNANOVL_FUZZ=ON -DNANOVL_CUDA=OFF -DNANOVL_BUILD_TESTS=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOVL_SANITIZE=ON > build-fuzz.log 2>&1 || { cat build-fuzz.log; exit 1; }
harnesses="image:fuzz_image file:fuzz_file st:fuzz_safetensors request:fuzz_request jinja:fuzz_jinja tokjson:fuzz_tokjson"
failed=()
built=()
for h in $harnesses; do
  bin=${h##*:}
  if cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" --target "$bin" >> build-fuzz.log 2>&1; then
    built+=("$h")
  else
    echo "run_short.sh: $bin does not build (build-fuzz.log):"
    grep -E "error" build-fuzz.log | tail -3
    failed+=("$bin: build")
  fi
done
shared=../shared/media
mkdir -p build-fuzz/crashes
for h in $harnesses; do
  dir=${h%%:*}
  mkdir -p build-fuzz/corpus/$dir
  cp -f tests/fuzz/corpus/$dir/* build-fuzz/corpus/$dir/ 2>/dev/null || true
done
if [ -d "$shared" ]; then
  cp -f "$shared"/image/* "$shared"/malformed/*.png "$shared"/malformed/*.jpg "$shared"/malformed/*.jpeg build-fuzz/corpus/image/ 2>/dev/null || true
  cp -f "$shared"/pdf/*.pdf "$shared"/malformed/*.pdf "$shared"/video/webm.webm "$shared"/malformed/*.mp4 build-fuzz/corpus/file/ 2>/dev/null || true
fi
export ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp"
floors=tests/fuzz/coverage_floor.txt
printf '%-18s %8s %8s %8s %10s %s\n' harness cov ft corpus execs floor
for h in "${built[@]}"; do
  dir=${h%%:*} bin=${h##*:}
  log=build-fuzz/$bin.log
  rc=0
  build-fuzz/tests/fuzz/$bin -max_total_time="$secs" -max_len=262144 -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 build-fuzz/corpus/$dir > "$log" 2>&1 || rc=$?
  # the last status line: "#N DONE cov: C ft: F corp: U/S ..." (or the last pulse before a crash)
  line=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: [0-9]+' | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line"); cov=${cov:-0}
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line"); ft=${ft:-0}
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9A-Za-z]+).*/\1/p' <<<"$line"); corp=${corp:-0}
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log"); execs=${execs:-?}
  floor=$(awk -v b="$bin" '$1 == b {print $2}' "$floors" 2>/dev/null || true); floor=${floor:-0}
  printf '%-18s %8s %8s %8s %10s %s\n' "$bin" "$cov" "$ft" "$corp" "$execs" "$floor"
  if [ "$rc" -ne 0 ]; then
    echo "run_short.sh: $bin exited $rc (crash or leak; input in build-fuzz/crashes/):"
    grep -E 'ERROR|SUMMARY' "$log" | head -5
    failed+=("$bin: crash")
  fi
  if [ "$cov" -lt "$floor" ]; then
    echo "run_short.sh: $bin reached coverage $cov, below its floor $floor ($floors)"
    failed+=("$bin: coverage $cov < $floor")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  printf 'run_short.sh: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
