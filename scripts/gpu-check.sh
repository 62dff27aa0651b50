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
# under compute-sanitizer, then bench_llm (the mid shape; the real 12B shape in BF16, FP8 and NVFP4 from sparse
# synthetic files, with and without decode graphs) and `nanovl bench --concurrency 1,16,64` on the device. Logs go to OUT_DIR (default
# gpu-check-out/), one per step, and OUT_DIR/figures.json holds the bench lines.
# Without a device it still builds and runs everything that runs without one (the GPU tests
# exit 77 inside ctest), then exits 77. Exit 0: all passed on a device; 1: something failed.
# Everything CUDA here had never run on a GPU when it was written: read the first failure first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$OUT"
t0=$(date +%s)
log() { echo "[gpu-check $(($(date +%s) - t0))s] $*" | tee -a "$OUT/summary.log"; }
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
  timeout "$want" "$@"
}

have_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >"$OUT/nvidia-smi.log" 2>&1; then
  have_gpu=1
  log "device: $(head -1 "$OUT/nvidia-smi.log")"
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
  if tar xJf gpu-deps/media.tar.xz -C "$mb" 2>"$OUT/media-unpack.log"; then
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
log "configure + build (build-gpu, $JOBS jobs)"
build_gpu() { # $@: extra cmake arguments
  rm -f build-gpu/CMakeCache.txt # dependency paths are found anew each run (gpu-deps/ or the system's)
  if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DNANOVL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        ${NANOVL_CMAKE_ARGS:-} "$@" >"$OUT/configure.log" 2>&1; then
    log "configure FAILED (see configure.log)"; tail -20 "$OUT/configure.log"; return 1
  fi
  if ! cmake --build build-gpu -j "$JOBS" >"$OUT/build.log" 2>&1; then
    log "build FAILED (see build.log)"; grep -m20 -E "error" "$OUT/build.log"; return 1
  fi
}
if [ ${#media_flags[@]} -gt 0 ]; then
  # the bundle's libraries: build with them, then a media smoke test (decode images, a video, a PDF)
  if build_gpu "${media_flags[@]}" && run_to 120 build-gpu/tests/media/test_media_made >"$OUT/media-smoke.log" 2>&1; then
    log "media from the bundle: test_media_made passed"
  else
    log "media from the bundle FAILED (configure.log / build.log / media-smoke.log): building with PDF and video off"
    cp "$OUT/configure.log" "$OUT/configure-media.log" 2>/dev/null; cp "$OUT/build.log" "$OUT/build-media.log" 2>/dev/null
    build_gpu -DNANOVL_PDF=OFF -DNANOVL_VIDEO=OFF || exit 1
  fi
else
  build_gpu || exit 1
fi
media=0
grep -q "PDF .*ON" "$OUT/configure.log" && grep -q "video .*ON\|FFmpeg .*ON\|VIDEO .*ON" "$OUT/configure.log" && media=1
log "PDF and video: $([ "$media" = 1 ] && echo on || echo off)"

rc=0
log "ctest -L gpu"
run_to 360 ctest --test-dir build-gpu --output-on-failure -L gpu --timeout 150 >"$OUT/ctest-gpu.log" 2>&1 || rc=1
tail -3 "$OUT/ctest-gpu.log" | tee -a "$OUT/summary.log"
grep -E '\*\*\*(Failed|Timeout|Exception)' "$OUT/ctest-gpu.log" | tee -a "$OUT/summary.log" || true

if [ "$have_gpu" = 1 ] && [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  log "GPU_CHECK_QUICK=1: the tests only (no sanitizer run, no benchmarks)"
elif [ "$have_gpu" = 1 ]; then
  # the op table under compute-sanitizer (out-of-bounds and misaligned accesses, API errors) where
  # the toolkit has it: the first device run of never-run kernels
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -n "$san" ]; then
    if run_to 150 "$san" --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops --backend cuda >"$OUT/memcheck_ops.log" 2>&1
    then log "compute-sanitizer memcheck test_ops --backend cuda: clean"
    else rc=1; log "compute-sanitizer memcheck test_ops FAILED: $(grep -m3 -E 'Invalid|ERROR|FAIL' "$OUT/memcheck_ops.log" | tr '\n' ' ')"; fi
  fi
  log "bench_llm on the device (mid shape, synthetic BF16 weights)"
  NVL_BACKEND=cuda run_to 240 build-gpu/bench/bench_llm --shape mid --prompt 128 --decode 32 >"$OUT/bench_llm.log" 2>&1 || rc=1
  NVL_BACKEND=cuda run_to 240 build-gpu/bench/bench_llm --shape mid --prompt 32 --decode 16 --seqs 1,16 \
      >"$OUT/bench_llm_seqs.log" 2>&1 || rc=1
  # the real 12B shape (sparse synthetic file: zeros, no disk written), #12's figures: prefill of a
  # 3.4K chunk against the measured GEMM rate, decode at 4K of context against the copy bandwidth
  for q in bf16 fp8 nvfp4; do
    log "bench_llm 12B $q on the device (prefill 3400, decode at 4096)"
    NVL_BACKEND=cuda run_to 240 build-gpu/bench/bench_llm --shape 12b --sparse --quant "$q" --prompt 3400 --chunk 3400 \
        --context 4096 --decode 48 >"$OUT/bench_12b_$q.log" 2>&1 || { rc=1; log "bench_llm 12B $q FAILED: $(tail -2 "$OUT/bench_12b_$q.log" | tr '\n' ' ')"; }
    rm -rf "/tmp/nanovl-bench-12b-$q-sparse" "/tmp/nanovl-bench-12b-sparse"
  done
  if grep -q "PNG .*ON" "$OUT/configure.log"; then # time to first token, the published shape end to end
    log "nanovl bench: a 13-tile page on the 12B shape with RADIO-H (synthetic weights)"
    if vl12=$(run_to 120 build-gpu/bench/bench_llm --shape 12b --sparse --vl tests/data/vl_tiny --radio-h 2>>"$OUT/bench_ttft.log"); then
      NVL_BACKEND=cuda run_to 240 build-gpu/api/nanovl bench --model "$vl12" --runs 2 --max-tokens 16 --json \
          >"$OUT/bench_ttft_page.json" 2>>"$OUT/bench_ttft.log" || rc=1
      if [ "$media" = 1 ] && [ -f gpu-deps/ttft_video.mp4 ]; then # 128 frames at 2 fps, EVS 0.7, decoding included
        log "nanovl bench: a 128-frame 720p video (2 fps, EVS 0.7) on the 12B shape with RADIO-H"
        NVL_BACKEND=cuda run_to 240 build-gpu/api/nanovl bench --model "$vl12" gpu-deps/ttft_video.mp4 --fps 2 \
            --max-frames 128 --evs 0.7 --runs 2 --max-tokens 16 --json >"$OUT/bench_ttft_video.json" 2>>"$OUT/bench_ttft.log" || rc=1
      fi
      rm -rf "$vl12"
    else rc=1; fi
  fi
  if [ "$media" = 1 ] && [ -f gpu-deps/ttft_video.mp4 ]; then # the host side of #15: rendering, decoding, tiling threads
    log "bench_media on the GPU machine's CPUs (a PDF's pages, 128 frames of 720p, their tiling)"
    run_to 120 build-gpu/bench/bench_media tests/data/media/made/two_pages.pdf gpu-deps/ttft_video.mp4 \
        >"$OUT/bench_media.log" 2>&1 || rc=1
  fi
  log "bench_vision RADIO-H on the device (13 tiles: a dense page; 64 tiles)"
  for nt in 13 64; do
    NVL_BACKEND=cuda run_to 180 build-gpu/bench/bench_vision --shape h --tiles "$nt" >"$OUT/bench_vision_$nt.log" 2>&1 || rc=1
  done
  NVL_CUDA_GRAPHS=0 NVL_BACKEND=cuda run_to 240 build-gpu/bench/bench_llm --shape 12b --sparse --prompt 128 --context 4096 \
      --chunk 2048 --decode 48 >"$OUT/bench_12b_nographs.log" 2>&1 || rc=1
  rm -rf /tmp/nanovl-bench-12b-sparse
  if [ "$media" = 1 ]; then # the scheduler: requests answered together on the device
    log "nanovl bench --concurrency on the device (mid shape around vl_tiny's vision tower)"
    if vl=$(run_to 120 build-gpu/bench/bench_llm --shape mid --vl tests/data/vl_tiny 2>>"$OUT/bench_conc.log"); then
      NVL_BACKEND=cuda run_to 150 build-gpu/api/nanovl bench --model "$vl" --concurrency 1,16,64 --max-tokens 64 --json \
          >"$OUT/bench_conc.json" 2>>"$OUT/bench_conc.log" || rc=1
    else rc=1; fi
  fi
  {
    echo "{\"device\": \"$(head -1 "$OUT/nvidia-smi.log" | sed 's/"/\\"/g')\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null)\","
    echo " \"bench_llm\": \"$(grep '^| mid' "$OUT/bench_llm.log" | sed 's/"/\\"/g')\","
    echo " \"seqs\": [$(grep '^seqs=' "$OUT/bench_llm_seqs.log" | sed 's/.*/"&"/' | paste -sd, -)],"
    echo " \"first_token_page\": $(cat "$OUT/bench_ttft_page.json" 2>/dev/null | grep . || echo null),"
    echo " \"first_token_video\": $(cat "$OUT/bench_ttft_video.json" 2>/dev/null | grep . || echo null),"
    echo " \"media\": [$(grep '^| ' "$OUT/bench_media.log" 2>/dev/null | sed 's/"/\\"/g; s/.*/"&"/' | paste -sd, -)],"
    echo " \"vision\": [$(cat "$OUT"/bench_vision_*.log 2>/dev/null | grep '^| RADIO' | sed 's/"/\\"/g; s/.*/"&"/' | paste -sd, -)],"
    echo " \"12b\": [$(cat "$OUT"/bench_12b_*.log 2>/dev/null | grep '^| 12b' | sed 's/"/\\"/g; s/.*/"&"/' | paste -sd, -)],"
    echo " \"concurrency\": $(cat "$OUT/bench_conc.json" 2>/dev/null | grep . || echo null)}"
  } >"$OUT/figures.json"
  log "figures: $OUT/figures.json"
else
  log "device benchmarks: skipped (no device; the gpu tests above skipped themselves)"
  log "done in $(($(date +%s) - t0)) s; exit 77 (no device)"
  exit 77
fi
log "done in $(($(date +%s) - t0)) s; exit $rc"
exit $rc
