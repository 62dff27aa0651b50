#!/bin/sh
# CI for samples/clients (ctest label samples): a server on the tiny checkpoint, run from another
# directory than the client's, and one client asking about the sample media by relative names (so
# only absolute paths or bytes work). Checks exit codes and the events: one accepted and one done
# per request, the done's values (tokens generated, prompt tokens equal by path and by bytes), OCR
# page markers, Ctrl-C cancelling a running request (exit 130, error "cancelled"), and (python, c) a
# conversation equal to `nanovl ask --chat`'s.
# usage: clients.sh c|python|socat NANOVL MODEL_DIR SAMPLES_DIR [C_CLIENT]
# Exit 77 (skipped) without python3 or socat for those clients.
kind=$1 B=$2 M=$3 S=$4 CC=${5:-}
case $kind in
  c) pfx= client=$CC ;;
  python) command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
          pfx=python3 client=$S/clients/nanovl_client.py ;;
  socat) command -v socat >/dev/null 2>&1 || { echo "SKIP: no socat"; exit 77; } ;;
  *) echo "unknown client $kind"; exit 2 ;;
esac
T=$(mktemp -d) || exit 1
mkdir "$T/srv"
(cd "$T/srv" && exec "$B" serve --model "$M" --socket "$T/s.sock" --quiet) &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$T"' EXIT
i=0
while [ ! -S "$T/s.sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
cd "$S/media" || exit 1
fail=0
check() {  # check NAME FILE ERE [COUNT]: FILE matches ERE (on COUNT lines, when given)
  n=$(grep -cE -- "$3" "$2")
  if [ -n "${4:-}" ] && [ "$n" != "$4" ] || [ "$n" = 0 ]; then
    echo "FAIL $1: '$3' on $n lines of $2${4:+ (want $4)}"; sed 's/^/  | /' "$2" | cut -c1-300; fail=1
  else echo "ok   $1"; fi
}
rc_is() { if [ "$2" = "$3" ]; then echo "ok   $1: exit $2"; else echo "FAIL $1: exit $2, want $3"; fail=1; fi; }

if [ "$kind" = socat ]; then
  timeout 60 sh "$S/clients/ask.sh" "$T/s.sock" chart.png 'Which quarter is "best"?' '{"max_tokens":3,"think":false}' > "$T/ev" 2>&1
  rc_is "ask.sh chart.png" $? 0
  check "one accepted" "$T/ev" '"event":"accepted"' 1
  check "tokens" "$T/ev" '"event":"token"'
  check "one done, 3 tokens, absolute path" "$T/ev" "\"event\":\"done\",\"answer\":.*\"completion_tokens\":3,.*\"name\":\"$S/media/chart.png\"" 1
  timeout 60 sh "$S/clients/ask.sh" "$T/s.sock" missing.png 'What is it?' > "$T/ev" 2>&1
  rc_is "ask.sh missing.png" $? 1
  check "not_found" "$T/ev" '"event":"error","code":"not_found"' 1
  exit $fail
fi

# ask, events: accepted, tokens, one done with the answer and the generated count
timeout 60 $pfx "$client" --socket "$T/s.sock" --events --max-tokens 4 --no-think chart.png "Which quarter had the highest revenue?" > "$T/ev" 2> "$T/err"
rc_is "ask chart.png --events" $? 0
check "one accepted" "$T/ev" '"event":"accepted","queue_position":0' 1
check "tokens" "$T/ev" '"event":"token","text":'
check "one done, 4 tokens" "$T/ev" '"event":"done","answer":.*"finish_reason":"length","usage":\{"prompt_tokens":[0-9]+,"image_tokens":[0-9]+,"completion_tokens":4,' 1
check "absolute path sent" "$T/ev" "\"name\":\"$S/media/chart.png\""
# ask, plain: the streamed answer is the done's answer; by path and by bytes the same prompt
timeout 60 $pfx "$client" --socket "$T/s.sock" --max-tokens 3 --no-think invoice.pdf "What is the total due?" > "$T/out1" 2> "$T/err1"
rc_is "ask invoice.pdf (path)" $? 0
check "done line" "$T/err1" '^\[done: [0-9]+ prompt tokens, 3 generated\]$' 1
timeout 60 $pfx "$client" --socket "$T/s.sock" --inline --max-tokens 3 --no-think invoice.pdf "What is the total due?" > "$T/out2" 2> "$T/err2"
rc_is "ask invoice.pdf --inline (bytes)" $? 0
a=$(grep '^\[done' "$T/err1") b=$(grep '^\[done' "$T/err2")
if [ -n "$a" ] && [ "$a" = "$b" ] && cmp -s "$T/out1" "$T/out2" && [ -s "$T/out1" ]; then echo "ok   path and bytes: same prompt, same answer"
else echo "FAIL path and bytes differ: '$a' '$b'"; cat "$T/out1" "$T/out2"; fail=1; fi
# ocr: a marker per page, in order
timeout 60 $pfx "$client" --socket "$T/s.sock" --ocr --max-tokens 3 invoice.pdf scan.jpg > "$T/ocr" 2> "$T/err"
rc_is "ocr invoice.pdf scan.jpg" $? 0
check "page markers" "$T/ocr" "^<!-- page [12]: $S/media/invoice.pdf -->$" 2
check "image marker" "$T/ocr" "^<!-- image: $S/media/scan.jpg -->$" 1
check "no failed pages" "$T/err" '^\[done: 0 failed pages\]$' 1
# the server's OCR is nanovl ocr's: the same instruction per page, the same Markdown
timeout 60 "$B" ocr --model "$M" --max-tokens 3 --no-progress "$S/media/invoice.pdf" "$S/media/scan.jpg" > "$T/ocr_cli" 2> /dev/null < /dev/null
if cmp -s "$T/ocr" "$T/ocr_cli"; then echo "ok   the server's OCR = nanovl ocr's"
else echo "FAIL the server's OCR differs from nanovl ocr's"; diff "$T/ocr" "$T/ocr_cli" | head -5; fail=1; fi
# a name that would end or open an HTML comment ("-->", "<!--") is escaped in its marker as nanovl ocr does
cp "$S/media/scan.jpg" "$T/a-->b<!--c--!>.jpg"
timeout 60 $pfx "$client" --socket "$T/s.sock" --ocr --max-tokens 3 "$T/a-->b<!--c--!>.jpg" > "$T/ocr2" 2> "$T/err"
timeout 60 "$B" ocr --model "$M" --max-tokens 3 --no-progress "$T/a-->b<!--c--!>.jpg" > "$T/ocr2_cli" 2> /dev/null < /dev/null
if cmp -s "$T/ocr2" "$T/ocr2_cli" && grep -q -- '-&gt;b&lt;!--c--!&gt;' "$T/ocr2"; then echo "ok   a name with --> and <!--: escaped as nanovl ocr does"
else echo "FAIL a name with --> differs from nanovl ocr's"; diff "$T/ocr2" "$T/ocr2_cli" | head -5; fail=1; fi
# Ctrl-C while a long request runs (24 pages, about 2 s here): cancelled on the server, exit 130
$pfx "$client" --socket "$T/s.sock" --max-tokens 4 invoice.pdf invoice.pdf invoice.pdf invoice.pdf invoice.pdf \
  invoice.pdf invoice.pdf invoice.pdf invoice.pdf invoice.pdf invoice.pdf invoice.pdf "Summarize." > "$T/cout" 2> "$T/cerr" &
cl=$!
i=0
while ! grep -q '\[vision\]' "$T/cerr" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -INT $cl
wait $cl
rc_is "Ctrl-C" $? 130
check "cancelled" "$T/cerr" 'error: cancelled' 1
# bad arguments: refused by the client, at once (a FIFO given --inline would block its read)
for mt in abc 0 -5; do
  timeout 20 $pfx "$client" --socket "$T/s.sock" --max-tokens $mt scan.jpg "What?" > "$T/bad" 2>&1
  rc=$?
  if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "max.tokens" "$T/bad"; then echo "ok   --max-tokens $mt refused (exit $rc)"
  else echo "FAIL --max-tokens $mt: exit $rc"; sed 's/^/  | /' "$T/bad"; fail=1; fi
done
mkfifo "$T/fifo"
for f in "$T/fifo" "$T"; do
  timeout 20 $pfx "$client" --socket "$T/s.sock" --inline "$f" "What?" > "$T/bad" 2>&1
  rc=$?
  if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "not a regular file" "$T/bad"; then echo "ok   --inline $f refused (exit $rc)"
  else echo "FAIL --inline $f: exit $rc"; sed 's/^/  | /' "$T/bad"; fail=1; fi
done
# python and c: a conversation (--chat), a question per line of stdin: each turn carries the earlier ones
# (the second's prompt is longer and reuses the files' prefill), and its answers equal those of
# `nanovl ask --chat` on the same questions
if [ "$kind" = python ] || [ "$kind" = c ]; then
  printf 'What is the total due?\n\nAnd how much of it is tax?\n' > "$T/qs"
  timeout 60 $pfx "$client" --socket "$T/s.sock" --chat --events --max-tokens 4 --no-think invoice.pdf < "$T/qs" > "$T/chat" 2> "$T/err"
  rc_is "chat invoice.pdf" $? 0
  check "two done events" "$T/chat" '"event":"done",' 2
  grep '"event":"done"' "$T/chat" | sed -n 2p > "$T/done2"
  check "the second reuses the document's prefill" "$T/done2" '"cached_prompt_tokens":[1-9]' 1
  answers() { sed -n 's/.*"answer":\("\([^"\\]\|\\.\)*"\).*/\1/p' "$1"; }
  p1=$(grep '"event":"done"' "$T/chat" | sed -n '1s/.*"prompt_tokens":\([0-9]*\).*/\1/p')
  p2=$(grep '"event":"done"' "$T/chat" | sed -n '2s/.*"prompt_tokens":\([0-9]*\).*/\1/p')
  if [ -n "$p1" ] && [ -n "$p2" ] && [ "$p2" -gt "$p1" ]; then echo "ok   the second turn carries the first ($p1 -> $p2 prompt tokens)"
  else echo "FAIL the second turn's prompt: $p1 -> $p2 tokens"; fail=1; fi
  timeout 60 "$B" ask --model "$M" --chat --json --max-tokens 4 --no-think --no-progress invoice.pdf < "$T/qs" > "$T/cli" 2> "$T/err"
  rc_is "nanovl ask --chat" $? 0
  if [ "$(answers "$T/chat")" = "$(answers "$T/cli")" ] && [ "$(answers "$T/cli" | wc -l)" = 2 ]; then echo "ok   the socket's conversation = ask --chat's"
  else echo "FAIL the socket's conversation differs from ask --chat's"; answers "$T/chat"; answers "$T/cli"; fail=1; fi
  # ask --chat's commands, in any case: /reset starts again (the question then answered as the
  # first), /help and a mistyped /foo are not questions, /exit ends (nothing after it asked)
  printf 'What is the total due?\n/RESET \n/help\n/foo\nWhat is the total due?\n/exit now\n/Exit\nNever asked?\n' > "$T/qs2"
  timeout 60 $pfx "$client" --socket "$T/s.sock" --chat --events --max-tokens 4 --no-think invoice.pdf < "$T/qs2" > "$T/chat2" 2> "$T/err2"
  rc_is "chat with commands" $? 0
  check "two turns (commands are not questions)" "$T/chat2" '"event":"done",' 2
  a1=$(answers "$T/chat2" | sed -n 1p) a2=$(answers "$T/chat2" | sed -n 2p)
  if [ -n "$a1" ] && [ "$a1" = "$a2" ] && [ "$a1" = "$(answers "$T/chat" | sed -n 1p)" ]; then echo "ok   /reset: the question answered as the first"
  else echo "FAIL /reset: '$a1' '$a2'"; fail=1; fi
  check "/help lists the commands" "$T/err2" '/reset starts the conversation again' 1
  check "/foo: not a command, not asked" "$T/err2" '^/foo is not a command' 1
  check "/exit now: said, not the end" "$T/err2" '^/exit takes nothing after it' 1
fi
# the server is still there and idle
timeout 60 $pfx "$client" --socket "$T/s.sock" --events --max-tokens 2 --no-think scan.jpg "What is this?" > "$T/ev" 2> "$T/err"
rc_is "ask after the cancel" $? 0
check "done after the cancel" "$T/ev" '"event":"done",.*"completion_tokens":2,' 1
exit $fail
