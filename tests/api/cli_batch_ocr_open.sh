#!/bin/sh
# `nanovl batch --parallel 2`: an ocr job's files are opened off the loop that steps the other
# jobs. The renderer's knob NVL_TEST_RENDERER_SLOW_OPEN makes opening a document whose path holds
# "slow-open" take 10 s (its listing, then its page's own opening). The manifest lists that ocr
# job first, then a short question: before, the loop opened the document itself, so the
# question's line came 10 s after the start at the earliest; now it must come within 7 s of the
# start, model loading included (a liveness check with a wide margin, read from when the line
# appears). Both answer: the ocr job its page, the question equal to the same question alone.
# Also: a write failure (a file size limit) stops the batch at once, with a message, though ocr
# jobs are listing their documents; `ocr -o` past that limit exits 1 naming the file; and `ocr`
# of several files shows which one's pages it is listing on its progress line.
# usage: cli_batch_ocr_open.sh NANOVL MODEL_DIR PDF
B=$1 M=$2 P=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0 n=0
cp "$P" "$T/slow-open.pdf" || exit 1
printf '{"id":"o","type":"ocr","files":["%s"],"params":{"max_tokens":3,"pages":"1"}}\n' "$T/slow-open.pdf" > "$T/jobs.jsonl"
printf '{"id":"q","question":"What is the capital of France?","params":{"max_tokens":6,"think":false}}\n' >> "$T/jobs.jsonl"
NVL_TEST_RENDERER_SLOW_OPEN="slow-open:10000" "$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/res.jsonl" --parallel 2 \
  --no-progress 2> "$T/log" &
pid=$!
tq="" to="" t=0
while [ $t -lt 1200 ] && kill -0 $pid 2>/dev/null; do # (tenths of a second, 120 s at most)
  [ -z "$tq" ] && grep -q '"id":"q"' "$T/res.jsonl" 2>/dev/null && tq=$t
  [ -z "$to" ] && grep -q '"id":"o"' "$T/res.jsonl" 2>/dev/null && to=$t
  sleep 0.1
  t=$((t + 1))
done
[ -z "$tq" ] && grep -q '"id":"q"' "$T/res.jsonl" 2>/dev/null && tq=$t
[ -z "$to" ] && grep -q '"id":"o"' "$T/res.jsonl" 2>/dev/null && to=$t
wait $pid
rc=$?
n=$((n + 1)); [ $rc = 0 ] || { echo "FAIL: batch exit $rc"; cat "$T/log"; fail=$((fail + 1)); }
n=$((n + 1)); if [ -n "$tq" ] && [ -n "$to" ] && [ "$tq" -lt 70 ]; then :; else
  echo "FAIL: the question's line came at ${tq:-never}, the ocr job's at ${to:-never} (tenths of a second from the start): the question waited for the opening"
  fail=$((fail + 1)); fi
n=$((n + 1)); grep '"id":"o"' "$T/res.jsonl" | grep -q '"status":"ok"' && [ "$(grep '"id":"o"' "$T/res.jsonl" | grep -o '"page":[0-9]' | wc -l)" = 1 ] ||
  { echo "FAIL: the ocr job's line"; grep '"id":"o"' "$T/res.jsonl"; fail=$((fail + 1)); }
# the question alone
sed -n 2p "$T/jobs.jsonl" > "$T/q.jsonl"
"$B" batch --model "$M" "$T/q.jsonl" --out "$T/q_res.jsonl" --no-progress 2>/dev/null
a1=$(grep -o '"answer":"[^"]*"' "$T/res.jsonl" | head -1) a2=$(grep -o '"answer":"[^"]*"' "$T/q_res.jsonl" | head -1)
n=$((n + 1)); [ -n "$a1" ] && [ "$a1" = "$a2" ] || { echo "FAIL: the question's answer '$a1', alone '$a2'"; fail=$((fail + 1)); }
# a write that fails (a file size limit: EFBIG; nanovl ignores SIGXFSZ, which would end it without
# a word) stops the batch at once, with a message, though six ocr jobs are listing slow documents
# (3 s each, two at a time: 9 s if they were waited for)
pad=$(printf '%0440d' 0)
printf '{"id":"zz","line":99,"status":"ok","pad":"%s"}\n' "$pad" > "$T/full.jsonl"
sed -n 2p "$T/jobs.jsonl" > "$T/jobs7.jsonl"
for i in 1 2 3 4 5 6; do
  printf '{"id":"o%d","type":"ocr","files":["%s"],"params":{"max_tokens":3,"pages":"1"}}\n' $i "$T/slow-open.pdf" >> "$T/jobs7.jsonl"
done
t0=$(date +%s%N)
(ulimit -f 1; NVL_TEST_RENDERER_SLOW_OPEN="slow-open:3000" exec "$B" batch --model "$M" "$T/jobs7.jsonl" \
  --out "$T/full.jsonl" --parallel 7 --no-progress > "$T/log7" 2>&1)
rc=$? ms=$((($(date +%s%N) - t0) / 1000000))
n=$((n + 1)); [ $rc = 1 ] && grep -q "write failed" "$T/log7" && [ $ms -lt 2500 ] ||
  { echo "FAIL: a failed write with jobs listing: exit $rc after $ms ms (want 1, under 2500)"; cat "$T/log7"; fail=$((fail + 1)); }
# ocr -o past a file size limit: exit 1 naming the file, not killed by SIGXFSZ
cp "$P" "$T/second.pdf" || exit 1
(ulimit -f 1; exec "$B" ocr --model "$M" "$T/second.pdf" "$T/second.pdf" "$T/second.pdf" --max-tokens 40 -o "$T/big.md" \
  --no-progress > "$T/log8" 2>&1)
rc=$?
n=$((n + 1)); [ $rc = 1 ] && grep -q "big.md.*File too large" "$T/log8" ||
  { echo "FAIL: ocr -o past a file size limit: exit $rc"; cat "$T/log8"; fail=$((fail + 1)); }
# ocr of several files says, on its progress line, which one's pages it is listing
"$B" ocr --model "$M" "$T/slow-open.pdf" "$T/second.pdf" --pages 1 --max-tokens 2 -o "$T/o.md" --progress 2> "$T/progress"
n=$((n + 1)); tr '\r' '\n' < "$T/progress" | grep -q "listing pages: $T/[a-z-]*.pdf ([12]/2)" ||
  { echo "FAIL: no 'listing pages' progress"; tr '\r' '\n' < "$T/progress" | head -5; fail=$((fail + 1)); }
echo "cli_batch_ocr_open: $((n - fail)) of $n checks passed (question at ${tq}, ocr job at ${to} tenths; the failed write stopped the batch in ${ms} ms)"
[ $fail = 0 ]
