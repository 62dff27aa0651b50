#!/bin/sh
# CI for samples/batch/run.sh on the tiny checkpoint: stopped after the first result, a torn last
# line added, the rerun drops it and skips the finished jobs; two shards; one ok line per job id.
# usage: batch.sh NANOVL MODEL_DIR SAMPLES_DIR
B=$1 M=$2 S=$3 fail=0
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
NANOVL=$B sh "$S/batch/run.sh" "$M" "$T/out" --max-tokens 4 > "$T/log" 2>&1
rc=$?
check() {  # check FILE ERE COUNT
  n=$(grep -cE -- "$2" "$1")
  if [ "$n" = "$3" ]; then echo "ok   $(basename "$1"): $2 ($n)"; else echo "FAIL $(basename "$1"): '$2' on $n lines, want $3"; fail=1; fi
}
[ $rc = 0 ] && echo "ok   run.sh: exit 0" || { echo "FAIL run.sh: exit $rc"; fail=1; }
# stopped by the signal, or (a fast machine) finished first and cut to its first line by run.sh
check "$T/log" 'interrupted \(rerun to resume\)|kept only the first line' 1
check "$T/log" 'dropping a torn last line' 1
check "$T/log" 'shard 0/1: 7 jobs, [1-6] already done' 1
check "$T/log" 'one line for each of the 7 jobs' 2
check "$T/log" 'shard 0/2: 4 jobs, 0 already done, 4 ok' 1
check "$T/log" 'shard 1/2: 3 jobs, 0 already done, 3 ok' 1
ids=$(sed -n 's/^{"id": "\([^"]*\)".*/\1/p' "$S/batch/jobs.jsonl")
for f in results.jsonl results.0.jsonl results.1.jsonl; do
  check "$T/out/$f" '"status":"ok"' "$(wc -l < "$T/out/$f")"
done
for id in $ids; do check "$T/out/results.jsonl" "^\\{\"id\":\"$id\",\"line\":[0-9]+,.*\"status\":\"ok\"" 1; done
check "$T/out/results.jsonl" '^\{"id":"invoice-ocr",.*"type":"ocr","pages":\[\{"file":"samples/media/invoice.pdf","page":1,' 1
check "$T/out/results.jsonl" '^\{"id":"clip-cut",.*"kind":"video",' 1
[ $fail = 0 ] || cat "$T/log"
exit $fail
