#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each for a bounded time,
# seeded from ../shared/media (read in place). A crash fails the script and leaves the input in
# build-fuzz/crashes/ to be added to tests/data/media/fuzz-regressions/.
#   tests/fuzz/run_short.sh [seconds per harness, default 20]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-20}"
command -v clang >/dev/null || { echo "run_short.sh: clang not installed, fuzzing skipped"; exit 0; }
CC=clang cmake -S . -B build-fuzz -DNANOVL_FUZZ=ON -DNANOVL_CUDA=OFF -DNANOVL_BUILD_TESTS=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOVL_SANITIZE=ON > build-fuzz.log 2>&1 || { cat build-fuzz.log; exit 1; }
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_image fuzz_file fuzz_safetensors fuzz_request fuzz_jinja fuzz_tokjson >> build-fuzz.log 2>&1 \
  || { tail -50 build-fuzz.log; exit 1; }
shared=../shared/media
mkdir -p build-fuzz/corpus/{image,file,st,request,jinja,tokjson} build-fuzz/crashes
if [ -d "$shared" ]; then
  cp -f "$shared"/image/* "$shared"/malformed/*.png "$shared"/malformed/*.jpg "$shared"/malformed/*.jpeg build-fuzz/corpus/image/ 2>/dev/null || true
  cp -f "$shared"/pdf/*.pdf "$shared"/malformed/*.pdf "$shared"/video/webm.webm "$shared"/malformed/*.mp4 build-fuzz/corpus/file/ 2>/dev/null || true
fi
cp -f tests/data/tiny_nemotron_h/*.safetensors build-fuzz/corpus/st/ 2>/dev/null || true
cp -f tests/reference/nano_v2_chat_template.jinja build-fuzz/corpus/jinja/ 2>/dev/null || true
cp -f tests/data/tokenizer/extra/fallback.json build-fuzz/corpus/tokjson/ 2>/dev/null || true
python3 - <<'PY' 2>/dev/null || true
import json
for i, c in enumerate(json.load(open("tests/data/jinja/goldens.json"))):
    if not c["template"].startswith(("file:", "shared:")):
        open(f"build-fuzz/corpus/jinja/feature{i}.jinja", "w").write(c["template"])
PY
printf '%s\n' '{"v":1,"id":"a","messages":[{"role":"user","content":[{"type":"image","data":"iVBORw0KGgo="},{"type":"text","text":"q"}]}],"params":{"max_tokens":3,"pages":"1-2"}}' \
  '{"type":"cancel","target":"a"}' '{"id":"b","type":"ocr","files":["x.pdf",{"path":"y.png","pages":"2"}]}' > build-fuzz/corpus/request/seed.jsonl
export ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp"
for h in image:fuzz_image file:fuzz_file st:fuzz_safetensors request:fuzz_request jinja:fuzz_jinja tokjson:fuzz_tokjson; do
  dir=${h%%:*} bin=${h##*:}
  echo "fuzzing $bin for ${secs}s"
  build-fuzz/tests/fuzz/$bin -max_total_time="$secs" -max_len=262144 -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 build-fuzz/corpus/$dir 2>&1 | tail -4
done
