#!/bin/sh
# CI for samples/cli/run.sh on the tiny checkpoint: every command exits 0; the JSON answers carry
# their values (3 answers of 4 tokens, the 2nd and 3rd reusing the document's prefill), the
# conversation's two turns, per-page
# and OCR markers, the video's frames.
# usage: cli.sh NANOVL MODEL_DIR SAMPLES_DIR
B=$1 M=$2 S=$3 fail=0
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
NANOVL=$B sh "$S/cli/run.sh" "$M" --max-tokens 4 --no-think > "$out" 2>&1
rc=$?
check() {  # check ERE COUNT
  n=$(grep -cE -- "$1" "$out")
  if [ "$n" = "$2" ]; then echo "ok   $1 ($n)"; else echo "FAIL '$1' on $n lines, want $2"; fail=1; fi
}
[ $rc = 0 ] && echo "ok   run.sh: exit 0" || { echo "FAIL run.sh: exit $rc"; fail=1; }
check '^\$ nanovl ' 7
check '^\{"answer":.*"completion_tokens":4,"cached_prompt_tokens":0,.*"kind":"pdf_page","page":2,' 1
check '^\{"answer":.*"completion_tokens":4,"cached_prompt_tokens":[1-9][0-9]*,' 2
check "^--- $S/media/invoice.pdf, page [12] ---\$" 2
check '^Q: (What is the total due\?|And how much of it is tax\?)$' 2
check '^A: ' 2
check "^<!-- image: $S/media/scan.jpg -->\$" 1
[ $fail = 0 ] || cat "$out"
exit $fail
