#!/usr/bin/env bash
# Every GPU test and benchmark in one run, for a bare GPU machine (CUDA toolkit, CMake, a C
# compiler; none of this project's Debian packages, no installs). Under 8 minutes on one H100/H200.
#
#   scripts/gpu-deps.sh                 # here, once: unpack cJSON + Oniguruma + pkgconf into gpu-deps/,
#                                       # and pack Poppler + FFmpeg into gpu-deps/media.tar.xz
#   scripts/gpu-check.sh [OUT_DIR]      # there (device tool: carry ["gpu-deps"], OUT_DIR "$OUT")
#   GPU_CHECK_QUICK=1 scripts/gpu-check.sh [OUT_DIR]   # the build and the gpu tests only (a first,
#                                                      # short look when device time is scarce)
#
# It builds build-gpu/ (CUDA on; the media libraries the machine's, else gpu-deps/media.tar.xz's
# unpacked into build-gpu-media/ and linked with an rpath to it; should that build or its media
# smoke test fail, it builds again with PDF and video off), runs
# the gpu-labelled ctest tests (test_kernels / test_ops --backend cuda, test_vision_gpu: the vision
# path and the engine CUDA vs CPU; the *_cuda twins of the model tests with NVL_BACKEND=cuda: LM
# goldens, the batched step with graph replay against eager execution, the ViT, the end-to-end VL
# goldens and the scheduler, the last two when PDF and video decoding are built), the op table
# one at a time, each under its own timeout), then the device benchmarks, the figures that matter
# first: bench_llm on the real 12B shape in BF16, FP8 and NVFP4 from sparse synthetic files, the
# time to first token of a page and a 128-frame video, RADIO-H tiles/s, then the mid shape, decode
# without graphs, `nanovl bench --concurrency 1,16,64` and the op table under compute-sanitizer
# (right after the tests instead when a test failed: it names the first bad access).
#
# What comes back: the device tool returns at most 8 files from OUT_DIR, so every step's log goes
# to a work folder (gpu-check-logs/, git-ignored) and OUT_DIR gets four files, written whatever
# happens (an EXIT trap): summary.log, figures.json, ctest-gpu.log and logs.tar.gz (every log);
# summary.log and figures.json are also printed at the end (the tool's output_tail).
# Run it as `bash scripts/gpu-check.sh` (file modes may not survive the copy); GPU_CHECK_COMMIT
# names the commit in figures.json where the copy has no .git.
# Without a device it still builds and runs everything that runs without one (the GPU tests
# exit 77), then exits 77. Exit 0: all passed on a device; 1: something failed, or a GPU test
# skipped itself on a device. First run on a device on 2026-12-04 (an H200: every GPU test passed,
# bench/RESULTS.md); on a failure, read the first one first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
L="$PWD/gpu-check-logs" # every log; packed into OUT/logs.tar.gz at exit
rm -rf "$L" && mkdir -p "$L"
t0=$(date +%s)
log() { echo "[gpu-check $(($(date +%s) - t0))s] $*" | tee -a "$L/summary.log"; }
COMMIT="${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
jstr() { sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/ /g' | tr -d '\r'; } # a JSON string's inside
json_or_null() { # a file's JSON, or null (missing, empty, or cut short by a timeout)
  if [ -s "$1" ] && { ! command -v python3 >/dev/null 2>&1 || python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null; }
  then cat "$1"; else echo null; fi
}
write_figures() { # the bench lines so far (also from an interrupted run)
  {
    echo "{\"device\": \"$(head -1 "$L/nvidia-smi.log" 2>/dev/null | jstr)\", \"commit\": \"$COMMIT\","
    echo " \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"complete\": ${figures_complete:-false},"
    echo " \"ctest\": \"$(grep -h '^gpu tests:' "$L"/ctest-gpu.log 2>/dev/null | head -1 | jstr)\","
    echo " \"12b\": [$(for f in "$L"/bench_12b_*.log; do [ -f "$f" ] && grep '^| 12b' "$f" | sed "s/^/$(basename "$f" .log) /"; done |
        jstr | sed 's/.*/"&"/' | paste -sd, -)],"
    echo " \"ops\": [$(grep -h '^ops: ' "$L"/bench_ops_*.log 2>/dev/null | sed 's/^ops: //' | paste -sd, -)],"
    echo " \"first_token_page\": $(json_or_null "$L/bench_ttft_page.json"),"
    echo " \"first_token_video\": $(json_or_null "$L/bench_ttft_video.json"),"
    echo " \"vision\": [$(cat "$L"/bench_vision_*.log 2>/dev/null | grep '^| RADIO' | jstr | sed 's/.*/"&"/' | paste -sd, -)],"
    echo " \"bench_llm\": \"$(grep -h '^| mid' "$L/bench_llm.log" 2>/dev/null | head -1 | jstr)\","
    echo " \"seqs\": [$(for f in "$L/bench_llm_seqs.log" "$L"/bench_12b_seqs_mma*.log; do [ -f "$f" ] && grep -h '^seqs=' "$f" | sed "s/^/$(basename "$f" .log) /"; done | jstr | sed 's/.*/"&"/' | paste -sd, -)],"
    echo " \"media\": [$(grep -h '^| ' "$L/bench_media.log" 2>/dev/null | jstr | sed 's/.*/"&"/' | paste -sd, -)],"
    echo " \"concurrency\": $(json_or_null "$L/bench_conc.json"),"
    echo " \"concurrency_image\": $(json_or_null "$L/bench_conc_image.json")}"
  } >"$OUT/figures.json"
}
finish() { # at exit, however it comes: OUT gets the four files, stdout the summary and figures
  local code=$?
  write_figures
  cp "$L/summary.log" "$OUT/summary.log" 2>/dev/null
  cp "$L/ctest-gpu.log" "$OUT/ctest-gpu.log" 2>/dev/null
  tar czf "$OUT/logs.tar.gz" -C "$(dirname "$L")" "$(basename "$L")" 2>/dev/null
  echo "---- figures.json"
  cat "$OUT/figures.json"
  exit "$code"
}
trap finish EXIT
trap 'log "stopped by a signal"; exit 1' TERM INT
# One budget for the whole run (device time is scarce and a hung kernel must not eat it): every
# step's timeout is cut to what is left of GPU_CHECK_BUDGET_S (default 470 s) less 15 s for the
# summary, and a step that would get under 10 s is skipped (exit 124), so the logs and
# figures.json are written before the device tool's limit.
BUDGET=${GPU_CHECK_BUDGET_S:-470}
run_to() { # run_to SECONDS CMD...: timeout within the budget
  local want=$1 left
  shift
  left=$((BUDGET - ($(date +%s) - t0) - 15))
  if [ "$left" -lt 10 ]; then
    log "skipped, the ${BUDGET} s budget is spent: $*" >&2 # (stderr: callers capture stdout)
    return 124
  fi
  [ "$left" -lt "$want" ] && want=$left
  timeout -k 10 "$want" "$@"
}

have_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >"$L/nvidia-smi.log" 2>&1; then
  have_gpu=1
  log "device: $(head -1 "$L/nvidia-smi.log"); commit $COMMIT"
else
  log "no CUDA device (nvidia-smi finds none): building and running what runs without one"
fi

# required libraries: the system's, else the unpacked ones in gpu-deps/ (their .pc files copied
# with the prefix pointed at gpu-deps/usr, searched before the system's)
use_deps() {
  local pc="$PWD/build-gpu-pc"
  mkdir -p "$pc"
  for f in gpu-deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do
    sed -E "s#^(prefix|exec_prefix|libdir|includedir)=/usr#\1=$PWD/gpu-deps/usr#" "$f" >"$pc/$(basename "$f")"
  done
  export PKG_CONFIG_PATH="$pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$PWD/gpu-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # their multiarch headers before the machine's: jpeglib.h includes jconfig.h, which Debian keeps in
  # include/x86_64-linux-gnu/, a folder no .pc file names; the H200 image's own (Ubuntu's libjpeg-turbo8,
  # JPEG_LIB_VERSION 80) was picked instead, and libjpeg 62 refused to start (the first device runs)
  export CPATH="$PWD/gpu-deps/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
  log "using gpu-deps/ for cJSON and Oniguruma"
}
# pkg-config itself (CMake finds every library through it): gpu-deps/'s pkgconf when the machine has none
if ! command -v pkg-config >/dev/null 2>&1 && [ -x gpu-deps/usr/bin/pkgconf ]; then
  mkdir -p build-gpu-pc/bin
  ln -sf "$PWD/gpu-deps/usr/bin/pkgconf" build-gpu-pc/bin/pkg-config
  export PATH="$PWD/build-gpu-pc/bin:$PATH"
  export LD_LIBRARY_PATH="$PWD/gpu-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "no pkg-config on the machine: using gpu-deps/'s pkgconf"
fi
if [ -d gpu-deps ] && { [ "${NVL_GPU_DEPS:-0}" = 1 ] || ! pkg-config --exists libcjson oniguruma 2>/dev/null; }; then
  use_deps # (NVL_GPU_DEPS=1 tests this path on a machine that has the libraries)
fi
# PDF and video: the machine's Poppler and FFmpeg, else the bundle (headers, libraries, .pc files
# with its folder filled in; the executables find its libraries through a DT_RPATH, which also
# serves their own dependencies, so nothing else the machine runs sees them)
media_flags=()
if [ -f gpu-deps/media.tar.xz ] && { [ "${NVL_GPU_DEPS:-0}" = 1 ] || ! pkg-config --exists poppler-glib libavformat 2>/dev/null; }; then
  mb="$PWD/build-gpu-media"
  rm -rf "$mb" && mkdir -p "$mb"
  if tar xJf gpu-deps/media.tar.xz -C "$mb" 2>"$L/media-unpack.log" ||
     python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' gpu-deps/media.tar.xz "$mb" \
         2>>"$L/media-unpack.log"; then # (python3's tarfile where the machine has no xz)
    sed -i "s#@PREFIX@#$mb/media#" "$mb"/media/pkgconfig/*.pc
    export PKG_CONFIG_PATH="$mb/media/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    lf="-Wl,--disable-new-dtags -Wl,-rpath,$mb/media/lib -Wl,-rpath-link,$mb/media/lib"
    media_flags=("-DCMAKE_EXE_LINKER_FLAGS=$lf") # (the CUDA module links no media library)
    log "using gpu-deps/media.tar.xz for Poppler and FFmpeg"
  else
    log "gpu-deps/media.tar.xz did not unpack (media-unpack.log): PDF and video as the machine has them"
  fi
fi

JOBS=$(nproc 2>/dev/null || echo 4)
gen=() # ninja where there is one (the GPU image has ninja and may have no make)
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
want_gen="${gen[*]:-make}"
if [ -f build-gpu/CMakeCache.txt ] && [ "$(cat build-gpu/.generator 2>/dev/null)" != "$want_gen" ]; then
  rm -rf build-gpu # another generator's build cannot be reused
fi
log "configure + build (build-gpu, $JOBS jobs, $want_gen)"
build_gpu() { # $@: extra cmake arguments
  rm -f build-gpu/CMakeCache.txt # dependency paths are found anew each run (gpu-deps/ or the system's)
  if ! run_to 120 cmake "${gen[@]}" -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DNANOVL_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DNANOVL_CUDA_EMU=OFF ${NANOVL_CMAKE_ARGS:-} "$@" >"$L/configure.log" 2>&1; then
    log "configure FAILED (see configure.log)"; tail -20 "$L/configure.log"; return 1
  fi
  echo "$want_gen" >build-gpu/.generator
  if ! run_to 300 cmake --build build-gpu -j "$JOBS" >"$L/build.log" 2>&1; then
    log "build FAILED (see build.log)"; grep -m20 -E "error" "$L/build.log"; return 1
  fi
}
media_diag() { # why the bundle's smoke test failed there (media-diag.log): it found the jconfig.h mismatch of 04683a5
  local t=build-gpu/tests/media/test_media_made d="$L/media-diag.log" gdb f x
  {
    echo "== machine"; grep -m2 -E '^(NAME|VERSION)=' /etc/os-release; ldd --version 2>&1 | head -1
    grep -m1 'model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*' | tr '\n' ' '; echo
    echo "== libraries loaded from outside the bundle"; ldd "$t" 2>&1 | grep -v "$mb/media/lib" | grep -v 'vdso\|libc.so\|libm.so\|ld-linux'
    echo "== each file through nanovl render (exit, last line)"
    for f in anim.gif lossless.webp image.bmp image.tiff cmyk.jpg cmyk_3x1.jpg rotated.mp4 clip_2s.mp4 two_pages.pdf; do
      run_to 30 build-gpu/api/nanovl render -o "$L/render" -- "tests/data/media/made/$f" >"$L/render-one.log" 2>&1
      echo "  $f: exit $? $(tail -1 "$L/render-one.log" | cut -c1-160)"
    done
    echo "== the other media tests (exit, last line)"
    for x in test_media test_media_edges test_image_sandbox test_pdf_sandbox; do
      run_to 40 "build-gpu/tests/media/$x" >"$L/media-$x.log" 2>&1
      echo "  $x: exit $? $(grep -m3 'FAIL' "$L/media-$x.log" | cut -c1-200 | tr '\n' ' ') $(tail -1 "$L/media-$x.log" | cut -c1-100)"
    done
    echo "== LD_DEBUG=files (last 6)"; LD_DEBUG=files run_to 40 "$t" 2>&1 >/dev/null | grep -E 'calling init|file=' | tail -6
    gdb=$(command -v cuda-gdb || ls /usr/local/cuda/bin/cuda-gdb 2>/dev/null)
    [ -n "$gdb" ] && { echo "== backtrace ($gdb)"; run_to 60 "$gdb" -batch -ex run -ex bt -ex 'info symbol $pc' -ex 'x/3i $pc' \
      -ex 'info registers rip rsp rbp rdi rsi rdx rcx rax' -ex 'x/40ga $sp' --args "$t" 2>&1 | grep -v '^\[\|^$\|Using host' | tail -60; }
  } >"$d" 2>&1
  if [ "${GPU_CHECK_MEDIA_ASAN:-0}" = 1 ]; then # the smoke test under AddressSanitizer (our code instrumented, the bundle not)
    echo "== AddressSanitizer" >>"$d"
    if run_to 60 cmake -G Ninja -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOVL_CUDA=OFF \
         "-DCMAKE_C_FLAGS=-fsanitize=address -fno-omit-frame-pointer" "-DCMAKE_EXE_LINKER_FLAGS=${media_flags[0]#*=} -fsanitize=address" \
         >"$L/asan-build.log" 2>&1 && run_to 120 cmake --build build-asan -j "$JOBS" --target test_media_made >>"$L/asan-build.log" 2>&1; then
      ASAN_OPTIONS=detect_leaks=0:fast_unwind_on_fatal=0 run_to 60 build-asan/tests/media/test_media_made >"$L/asan-run.log" 2>&1
      echo "exit $?" >>"$d"; grep -v '^ *$' "$L/asan-run.log" | grep -A40 -m1 'ERROR\|SEGV' >>"$d"
    else echo "the ASan build failed: $(grep -m3 error "$L/asan-build.log")" >>"$d"; fi
  fi
}
if [ ${#media_flags[@]} -gt 0 ]; then
  # the bundle's libraries: build with them, then a media smoke test (decode images, a video, a PDF)
  if build_gpu "${media_flags[@]}" && run_to 120 build-gpu/tests/media/test_media_made >"$L/media-smoke.log" 2>&1; then
    log "media from the bundle: test_media_made passed"
  else
    if [ -x build-gpu/tests/media/test_media_made ]; then
      media_diag
      sed 's/^/  /' "$L/media-diag.log" | head -170 | tee -a "$L/summary.log"
    fi
    log "media from the bundle FAILED (configure.log / build.log / media-smoke.log): building with PDF and video off"
    [ "${GPU_CHECK_MEDIA_DIAG_ONLY:-0}" = 1 ] && { log "GPU_CHECK_MEDIA_DIAG_ONLY=1: stopping after the diagnosis"; exit 1; }
    cp "$L/configure.log" "$L/configure-media.log" 2>/dev/null; cp "$L/build.log" "$L/build-media.log" 2>/dev/null
    build_gpu -DNANOVL_PDF=OFF -DNANOVL_VIDEO=OFF || exit 1
  fi
else
  build_gpu || exit 1
fi
media=0
grep -q "PDF .*ON" "$L/configure.log" && grep -q "video .*ON\|FFmpeg .*ON\|VIDEO .*ON" "$L/configure.log" && media=1
log "PDF and video: $([ "$media" = 1 ] && echo on || echo off)"

rc=0
# the gpu tests one at a time, each bounded (a test's own TIMEOUT property would outlast the
# budget, and one hung never-run kernel must cost one test, not the run)
tests=$(ctest --test-dir build-gpu -N -L gpu 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *//p')
log "ctest -L gpu: $(echo $tests | wc -w) tests, one at a time"
if [ -z "$tests" ] && [ "$have_gpu" = 1 ]; then # (a build without them, or ctest failing: not a pass)
  rc=1
  log "no gpu-labelled test found in build-gpu: nothing was checked on the device"
fi
: >"$L/ctest-gpu.log"
n_pass=0 n_fail=0 n_skip=0 failed=""
for t in $tests; do
  run_to 150 ctest --test-dir build-gpu --output-on-failure -R "^$t\$" >"$L/ctest-one.log" 2>&1
  code=$?
  cat "$L/ctest-one.log" >>"$L/ctest-gpu.log"
  if grep -q "Skipped\|Not Run" "$L/ctest-one.log"; then n_skip=$((n_skip + 1)); res=skipped
  elif [ "$code" = 0 ]; then n_pass=$((n_pass + 1)); res=passed
  else n_fail=$((n_fail + 1)); res="FAILED (exit $code)"; rc=1; failed="$failed $t"; fi
  log "  $t: $res"
done
# triage: a failed test again on the simpler kernels the tensor-core ones replaced (flash
# attention, chunked SSD, the quantized GEMV): whether those are what fails. The first two
# failures only, 60 s each: with every test failing, retrying all would spend the budget the
# benchmarks need
n_triage=0
for t in $failed; do
  n_triage=$((n_triage + 1))
  if [ "$n_triage" -gt 2 ]; then log "  (triage of the other failed tests skipped: the budget goes to the benchmarks)"; break; fi
  if NVL_CUDA_FLASH=0 NVL_CUDA_SSD=0 NVL_CUDA_GEMV=0 run_to 60 ctest --test-dir build-gpu --output-on-failure -R "^$t\$" \
       >"$L/ctest-simple-$t.log" 2>&1
  then log "  $t passes with NVL_CUDA_FLASH=0 NVL_CUDA_SSD=0 NVL_CUDA_GEMV=0: a tensor-core kernel or the GEMV fails it"
  else log "  $t fails with the simpler kernels too (ctest-simple-$t.log)"; fi
done
echo "gpu tests: $n_pass passed, $n_fail failed, $n_skip skipped (tests passed: $n_pass of $((n_pass + n_fail + n_skip)))" \
  >>"$L/ctest-gpu.log"
log "gpu tests: $n_pass passed, $n_fail failed, $n_skip skipped"
if [ "$have_gpu" = 1 ] && [ "$n_skip" -gt 0 ]; then # on a device a skip is a failure (a backend that did not start)
  rc=1
  log "GPU tests skipped themselves on a device: $(grep -h -m3 -i 'skip' "$L/ctest-gpu.log" | tr '\n' ' ')"
fi

memcheck() { # the op table under compute-sanitizer (out-of-bounds and misaligned accesses, API errors)
  local san
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  [ -n "$san" ] || { log "compute-sanitizer: not found"; return; }
  run_to 120 "$san" --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops --backend cuda >"$L/memcheck_ops.log" 2>&1
  local code=$?
  if [ "$code" = 0 ]; then log "compute-sanitizer memcheck test_ops --backend cuda: clean"
  elif [ "$code" = 124 ] || [ "$code" = 137 ]; then
    local n_inv
    n_inv=$(grep -c 'Invalid' "$L/memcheck_ops.log")
    [ "$n_inv" -gt 0 ] && rc=1
    log "compute-sanitizer memcheck test_ops: timed out (exit $code; memcheck slows kernels tenfold); $n_inv invalid accesses reported by then"
  elif grep -q "Device not supported\|error 999\|Target application terminated before first instrumented API call" "$L/memcheck_ops.log"
  then log "compute-sanitizer cannot run on this machine: $(grep -m1 -i 'not supported\|error' "$L/memcheck_ops.log")"
  else rc=1; log "compute-sanitizer memcheck test_ops FAILED: $(grep -m3 -E 'Invalid|ERROR|FAIL' "$L/memcheck_ops.log" | tr '\n' ' ')"; fi
}
bench() { # bench NAME SECONDS CMD...: a bench step whose failure is logged
  local name=$1 secs=$2
  shift 2
  if ! NVL_BACKEND=cuda run_to "$secs" "$@" >"$L/$name.log" 2>&1; then
    rc=1
    log "$name FAILED: $(tail -2 "$L/$name.log" | tr '\n' ' ')"
  fi
}

if [ "$have_gpu" = 1 ] && [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  log "GPU_CHECK_QUICK=1: the tests only (no sanitizer run, no benchmarks)"
  [ "$n_fail" -gt 0 ] && memcheck
elif [ "$have_gpu" = 1 ]; then
  # GPU_CHECK_ONLY="NAME ..." runs only those benchmark steps (a rerun of what an earlier run
  # missed): 12b pdl mma ops ops_i8 ttft_page ttft_video vision mid nographs conc media fp8lt memcheck profile ncu
  named() { [[ " ${GPU_CHECK_ONLY:-} " == *" $1 "* ]]; }
  want() { [ -z "${GPU_CHECK_ONLY:-}" ] || named "$1"; }
  [ -n "${GPU_CHECK_ONLY:-}" ] && log "GPU_CHECK_ONLY: $GPU_CHECK_ONLY"
  early_memcheck=0
  if [ "$n_fail" -gt 0 ] && want memcheck; then early_memcheck=1; memcheck; fi # a failed test: where the first bad access is
  # the real 12B shape (sparse synthetic file: zeros, no disk written), #12's figures: prefill of a
  # 3.4K chunk against the measured GEMM rate, decode at 4K of context against the copy bandwidth
  want 12b && for q in bf16 fp8 nvfp4; do
    log "bench_llm 12B $q on the device (prefill 3400, decode at 4096)"
    bench "bench_12b_$q" 200 build-gpu/bench/bench_llm --shape 12b --sparse --quant "$q" --prompt 3400 --chunk 3400 \
        --context 4096 --decode 48
    rm -rf "/tmp/nanovl-bench-12b-$q-sparse" "/tmp/nanovl-bench-12b-sparse"
  done
  if want 12b || want pdl; then # decode with programmatic dependent launch (opt-in) beside the default above
    for q in bf16 nvfp4; do
      log "bench_llm 12B $q with NVL_CUDA_PDL=1 (decode at 4096)"
      NVL_CUDA_PDL=1 bench "bench_12b_${q}_pdl" 120 build-gpu/bench/bench_llm --shape 12b --sparse --quant "$q" --prompt 128 \
          --chunk 128 --context 4096 --decode 48
      rm -rf "/tmp/nanovl-bench-12b-$q-sparse" "/tmp/nanovl-bench-12b-sparse"
    done
  fi
  if want 12b || want mma; then # 8 sequences decoding together at the 12B shape (the rows on the tensor-core GEMVs), then
    # without them (NVL_CUDA_GEMV_MMA=0: the CUDA-core GEMVs); and FP8 at one row the same two ways
    for mm in 1 0; do
      log "bench_llm 12B bf16, 1 and 8 sequences, NVL_CUDA_GEMV_MMA=$mm"
      NVL_CUDA_GEMV_MMA=$mm bench "bench_12b_seqs_mma$mm" 120 build-gpu/bench/bench_llm --shape 12b --sparse --prompt 64 \
          --decode 16 --seqs 1,8
    done
    rm -rf "/tmp/nanovl-bench-12b-sparse"
    log "bench_llm 12B bf16 with NVL_CUDA_GEMV_MMA=all (one decode row on the tensor-core GEMV)"
    NVL_CUDA_GEMV_MMA=all bench bench_12b_bf16_mmaall 120 build-gpu/bench/bench_llm --shape 12b --sparse --prompt 128 \
        --chunk 128 --context 4096 --decode 48
    rm -rf "/tmp/nanovl-bench-12b-sparse"
    log "bench_llm 12B fp8 with NVL_CUDA_GEMV_MMA=0 (decode on the CUDA-core GEMV)"
    NVL_CUDA_GEMV_MMA=0 bench bench_12b_fp8_nomma 120 build-gpu/bench/bench_llm --shape 12b --sparse --quant fp8 \
        --prompt 128 --chunk 128 --context 4096 --decode 48
    rm -rf "/tmp/nanovl-bench-12b-fp8-sparse" "/tmp/nanovl-bench-12b-sparse"
  fi
  if want 12b || want ops_i8; then # NVFP4 decode on the direct GEMV (NVL_CUDA_GEMV_I8=0) beside the integer one above
    log "bench_llm 12B nvfp4 with NVL_CUDA_GEMV_I8=0 (decode on the direct GEMV)"
    NVL_CUDA_GEMV_I8=0 bench bench_12b_nvfp4_direct 120 build-gpu/bench/bench_llm --shape 12b --sparse --quant nvfp4 \
        --prompt 128 --chunk 128 --context 4096 --decode 48
    rm -rf "/tmp/nanovl-bench-12b-nvfp4-sparse" "/tmp/nanovl-bench-12b-sparse"
  fi
  # the prefill ops that are not GEMMs at the 12B shapes, a 3400-row chunk, and decode GEMVs in
  # BF16 / FP8 / NVFP4: the tensor-core kernels (flash attention, chunked SSD) and the quantized
  # GEMV, then the simpler ones they replace
  if want ops; then
    log "bench_ops 12B: attention and the Mamba scan over 3400 rows, decode GEMVs; new kernels and simple ones"
    bench bench_ops_fast 60 build-gpu/bench/bench_ops --backend cuda --shape 12b
    NVL_CUDA_FLASH=0 NVL_CUDA_SSD=0 NVL_CUDA_GEMV=0 bench bench_ops_simple 90 build-gpu/bench/bench_ops --backend cuda \
        --shape 12b
    # the chunked SSD's one block per head walking its chunks (k_ssm_chunked, before the windows)
    NVL_CUDA_SSD=seq bench bench_ops_ssdseq 60 build-gpu/bench/bench_ops --backend cuda --shape 12b
    # the BF16 decode GEMV with 2 and 8 loads in flight a lane (default 4): which one is fastest per shape
    NVL_CUDA_GEMV_DEPTH=2 bench bench_ops_gemv2 60 build-gpu/bench/bench_ops --backend cuda --shape 12b
    NVL_CUDA_GEMV_DEPTH=8 bench bench_ops_gemv8 60 build-gpu/bench/bench_ops --backend cuda --shape 12b
    # the BF16 one-row GEMVs on the tensor cores (k_gemv_mma) against k_gemv_bf16 above, shape by
    # shape, and the ViT attention on the WMMA kernel (NVL_CUDA_ATTN_MMA=0) against mma.sync above
    NVL_CUDA_GEMV_MMA=all NVL_CUDA_ATTN_MMA=0 bench bench_ops_mmaall 60 build-gpu/bench/bench_ops --backend cuda --shape 12b
  fi
  if want ops_i8; then
    log "bench_ops 12B with NVL_CUDA_GEMV_I8=0 (the NVFP4 decode GEMV on the direct kernel)"
    NVL_CUDA_GEMV_I8=0 bench bench_ops_i8off 60 build-gpu/bench/bench_ops --backend cuda --shape 12b
  fi
  if named ncu; then
    # Nsight Compute over the kernels that bound the figures (decode GEMVs, the chunked SSD scan,
    # flash attention): speed of light, warp stalls, occupancy; only when named (it replays kernels)
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    if [ -n "$ncu" ]; then
      log "ncu ($ncu) over bench_ops 12B: k_gemv*, the chunked SSD's k_ssd_*, k_attention_flash"
      run_to 120 "$ncu" --clock-control none --section SpeedOfLight --section WarpStateStats --section Occupancy \
          --section LaunchStats --section MemoryWorkloadAnalysis -k 'regex:k_gemv|k_ssd_|k_attention_flash' -c 16 \
          build-gpu/bench/bench_ops --backend cuda --shape 12b --runs 1 >"$L/ncu.log" 2>&1 || log "ncu: exit $? (ncu.log)"
      grep -E 'Context [0-9]+, Stream|Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Stall|Warp Cycles Per Issued|Issued Ipc' \
          "$L/ncu.log" | head -150 | sed 's/^/  /' | tee -a "$L/summary.log" >/dev/null
    else log "ncu: not found"; fi
  fi
  if grep -q "PNG .*ON" "$L/configure.log" && { want ttft_page || want ttft_video; }; then # time to first token, the published shape end to end
    if vl12=$(run_to 120 build-gpu/bench/bench_llm --shape 12b --sparse --vl tests/data/vl_tiny --radio-h 2>>"$L/bench_ttft.log"); then
      if want ttft_page; then
        log "nanovl bench: a 13-tile page on the 12B shape with RADIO-H (synthetic weights)"
        NVL_BACKEND=cuda run_to 200 build-gpu/api/nanovl bench --model "$vl12" --runs 2 --max-tokens 16 --json \
            >"$L/bench_ttft_page.json" 2>>"$L/bench_ttft.log" || { rc=1; log "first token, page: FAILED (bench_ttft.log)"; }
      fi
      if [ "$media" = 1 ] && [ -f gpu-deps/ttft_video.mp4 ] && want ttft_video; then # 128 frames at 2 fps, EVS 0.7, decoding included
        log "nanovl bench: a 128-frame 720p video (2 fps, EVS 0.7) on the 12B shape with RADIO-H"
        NVL_BACKEND=cuda run_to 200 build-gpu/api/nanovl bench --model "$vl12" gpu-deps/ttft_video.mp4 --fps 2 \
            --max-frames 128 --evs 0.7 --runs 2 --max-tokens 16 --json >"$L/bench_ttft_video.json" 2>>"$L/bench_ttft.log" ||
          { rc=1; log "first token, video: FAILED (bench_ttft.log)"; }
      fi
      rm -rf "$vl12"
    else rc=1; log "the 12B VL checkpoint was not made (bench_ttft.log)"; fi
  fi
  want vision && log "bench_vision RADIO-H on the device (13 tiles: a dense page; 64 tiles)"
  want vision && for nt in 13 64; do
    bench "bench_vision_$nt" 150 build-gpu/bench/bench_vision --shape h --tiles "$nt"
  done
  # the Linear layers' bias in a kernel of its own after an f32 GEMM (the form before the epilogue)
  want vision && NVL_CUDA_LT_BIAS=0 bench bench_vision_13_ltbias0 120 build-gpu/bench/bench_vision --shape h --tiles 13
  # the ViT attention on the WMMA kernel (the form before mma.sync)
  want vision && NVL_CUDA_ATTN_MMA=0 bench bench_vision_13_attnwmma 120 build-gpu/bench/bench_vision --shape h --tiles 13
  if want mid; then
    log "bench_llm on the device (mid shape, synthetic BF16 weights; 1 and 16 sequences)"
    bench bench_llm 150 build-gpu/bench/bench_llm --shape mid --prompt 128 --decode 32
    # (4 and 8 sequences: the decode rows on the tensor-core GEMV; 16: cuBLAS)
    bench bench_llm_seqs 150 build-gpu/bench/bench_llm --shape mid --prompt 32 --decode 16 --seqs 1,4,8,16
  fi
  if want nographs; then
    log "bench_llm 12B without decode graphs"
    NVL_CUDA_GRAPHS=0 bench bench_12b_nographs 200 build-gpu/bench/bench_llm --shape 12b --sparse --prompt 128 --context 4096 \
        --chunk 2048 --decode 48
    rm -rf /tmp/nanovl-bench-12b-sparse
  fi
  if [ "$media" = 1 ] && want conc; then # the scheduler: requests answered together on the device
    log "nanovl bench --concurrency on the device (text-only questions, then about an image; the mid shape in vl_tiny's VL checkpoint)"
    if vl=$(run_to 120 build-gpu/bench/bench_llm --shape mid --vl tests/data/vl_tiny 2>>"$L/bench_conc.log"); then
      NVL_BACKEND=cuda run_to 200 build-gpu/api/nanovl bench --model "$vl" --concurrency 1,16,64 --max-tokens 64 --json \
          >"$L/bench_conc.json" 2>>"$L/bench_conc.log" || { rc=1; log "concurrency: FAILED (bench_conc.log)"; }
      # questions about an image each (vision batched with other requests' decode steps; the
      # tiny ViT: the scheduling, not RADIO-H's speed, which bench_vision measures)
      log "nanovl bench --concurrency 1,16 about an image each"
      NVL_BACKEND=cuda run_to 120 build-gpu/api/nanovl bench --model "$vl" tests/data/media/made/image.bmp --concurrency 1,16 \
          --max-tokens 32 --json >"$L/bench_conc_image.json" 2>>"$L/bench_conc.log" ||
        { rc=1; log "concurrency with images: FAILED (bench_conc.log)"; }
    else rc=1; log "the mid VL checkpoint was not made (bench_conc.log)"; fi
  fi
  if [ "$media" = 1 ] && [ -f gpu-deps/ttft_video.mp4 ] && want media; then # the host side of #15: rendering, decoding, tiling threads
    log "bench_media on the GPU machine's CPUs (a PDF's pages, 128 frames of 720p, their tiling)"
    run_to 120 build-gpu/bench/bench_media tests/data/media/made/two_pages.pdf gpu-deps/ttft_video.mp4 \
        tests/data/media/pdf_ref/amt_handbook_sample.page1.png \
        >"$L/bench_media.log" 2>&1 || { rc=1; log "bench_media FAILED"; }
  fi
  # FP8 prefill through cuBLASLt's FP8 tensor cores (opt-in, NVL_CUDA_FP8_LT=1) beside the
  # default (exact bf16 factors) measured above: what the opt-in buys
  if want fp8lt; then
    log "bench_llm 12B fp8 with NVL_CUDA_FP8_LT=1 (prefill 3400)"
    NVL_CUDA_FP8_LT=1 bench bench_12b_fp8lt 150 build-gpu/bench/bench_llm --shape 12b --sparse --quant fp8 --prompt 3400 \
        --chunk 3400 --context 4096 --decode 8
    rm -rf "/tmp/nanovl-bench-12b-fp8-sparse" "/tmp/nanovl-bench-12b-sparse"
  fi
  [ "$early_memcheck" = 0 ] && want memcheck && memcheck
  # where a step's time goes, op by op (last: the first thing a short device slot cuts)
  if want profile; then
    log "bench_llm 12B profiled: every op's time in a 3.4K prefill and in decode at 4K (events per op, no graphs)"
    NVL_PROFILE_OPS=1 NVL_CUDA_GRAPHS=0 bench bench_12b_profile 200 build-gpu/bench/bench_llm --shape 12b --sparse \
        --prompt 3400 --chunk 3400 --context 4096 --decode 16
    rm -rf /tmp/nanovl-bench-12b-sparse
    log "bench_vision RADIO-H profiled: every op's time over 13 tiles (a page)"
    NVL_PROFILE_OPS=1 bench bench_vision_profile 90 build-gpu/bench/bench_vision --shape h --tiles 13
  fi
  # (into the work folder's summary: finish() copies it over OUT's, and prints it)
  grep -A12 '^profile .*decode steps' "$L/bench_12b_profile.log" 2>/dev/null | sed 's/^/  /' | tee -a "$L/summary.log" || true
  grep -A12 '^profile .*the ViT' "$L/bench_vision_profile.log" 2>/dev/null | sed 's/^/  /' | tee -a "$L/summary.log" || true
  [ -z "${GPU_CHECK_ONLY:-}" ] && figures_complete=true
  log "figures: $OUT/figures.json"
else
  log "device benchmarks: skipped (no device; the gpu tests above skipped themselves)"
  log "done in $(($(date +%s) - t0)) s; exit 77 (no device)"
  exit 77
fi
log "done in $(($(date +%s) - t0)) s; exit $rc"
exit $rc
