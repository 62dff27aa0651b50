#!/bin/sh
# Still images are decoded in a process of their own, bounded by --image-memory and
# --image-timeout (media.h, media_image_sandbox): a 3 KB WebP of 9000x9000 pixels (570 MB to
# decode) is refused naming the file in media-info, ask and batch, and the next image is answered;
# a decoder that crashes (the test knob NVL_TEST_IMAGE_ABORT) or hangs (NVL_TEST_IMAGE_HANG) fails
# that image only; an image read from a descriptor works; bad values are usage errors.
# usage: cli_image_decoder.sh NANOVL MODEL_DIR MADE_MEDIA_DIR
B=$1 M=$2 D=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
H=$D/huge_image.webp I=$D/../edges/orient_1.png
MEM="--image-memory 200"
R="huge_image.webp: decoding the image needed more than 200 MiB of memory (the image memory limit, --image-memory)"
expect_fixed 1 "$R" "$B" media-info "$H" $MEM
expect_fixed 1 "$R" "$B" ask --model "$M" "$H" "What?" --max-tokens 2 $MEM
# the same question about an ordinary image: answered through the decoder
expect_fixed 0 '"answer":' "$B" ask --model "$M" "$I" "What?" --max-tokens 2 --json $MEM
# batch: the job records the error; the next job runs
printf '{"id":"a","files":["%s"],"question":"What?","params":{"max_tokens":2}}\n{"id":"b","files":["%s"],"question":"What?","params":{"max_tokens":2}}\n' \
    "$H" "$I" > "$T/jobs.jsonl"
"$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/res.jsonl" $MEM > "$T/out" 2>&1 </dev/null
n=$((n + 1)); grep -q '"id":"a".*"code":"limit_exceeded".*needed more than 200 MiB' "$T/res.jsonl" && grep -q '"id":"b".*"answer"' "$T/res.jsonl" || {
    echo "FAIL: batch:"; sed 's/^/    /' "$T/res.jsonl" "$T/out" | head -10; fail=$((fail + 1)); }
# a crash in the decoder: that image's error, exit 1, nothing else dies
cp "$I" "$T/crash_me.png"
expect_fixed 1 "crash_me.png: damaged image: the decoder crashed (signal 6, Aborted)" \
    env NVL_TEST_IMAGE_ABORT=crash_me "$B" media-info "$T/crash_me.png"
# the time bound
cp "$I" "$T/stuck.png"
expect_fixed 1 "stuck.png: decoding the image took longer than 0.5 s" \
    env NVL_TEST_IMAGE_HANG=stuck "$B" media-info "$T/stuck.png" --image-timeout 0.5
# an image read from a descriptor
expect_fixed 0 "image: " sh -c "'$B' media-info /dev/stdin < '$I'"
# bad values
expect_fixed 2 "--image-timeout needs a number in 0..86400, got soon" "$B" media-info "$I" --image-timeout soon
expect_fixed 2 "--image-memory needs a number in 0..999999" "$B" ask --model "$M" "$I" "What?" --image-memory -1
expect_report
