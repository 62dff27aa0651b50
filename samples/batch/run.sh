#!/bin/sh
# Runs samples/batch/jobs.jsonl three ways: interrupted and resumed, then split in two shards.
#
#   samples/batch/run.sh MODEL_DIR [OUT_DIR] [nanovl batch options...]
#   samples/batch/run.sh ~/models/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16 out/
#   samples/batch/run.sh tests/data/vl_tiny out/ --max-tokens 4      # the tiny test checkpoint
#
# The jobs name the media relative to the repository root, and nanovl resolves a relative path
# against its working directory, so this script runs nanovl from the root (give absolute paths in
# your own jobs files). NANOVL picks the binary (default: build/api/nanovl, else nanovl on PATH).
# Writes OUT_DIR/results.jsonl (the resumed run) and OUT_DIR/results.{0,1}.jsonl (the shards);
# exit 0 when every job has exactly one result line in each.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] || { sed -n '2,12p' "$0"; exit 2; }
model=$1
out=${2:-batch-out}
[ $# -ge 2 ] && shift 2 || shift 1
case $model in /*) ;; *) model=$(pwd)/$model ;; esac
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1
NANOVL=${NANOVL:-$root/build/api/nanovl}
[ -x "$NANOVL" ] || NANOVL=nanovl
jobs=samples/batch/jobs.jsonl
cd "$root" || exit 1
ids=$(sed -n 's/^{"id": "\([^"]*\)".*/\1/p' "$jobs")
n_jobs=$(echo "$ids" | wc -l)

# one_line_per_id FILE...: every job id has exactly one line across the files
one_line_per_id() {
  bad=0
  for id in $ids; do
    c=$(cat "$@" | grep -c "^{\"id\":\"$id\",")
    [ "$c" = 1 ] || { echo "  $id: $c result lines"; bad=1; }
  done
  return $bad
}

echo "== 1. run the $n_jobs jobs, stopped (SIGTERM, as a preempted Slurm task gets) after the first result"
rm -f "$out/results.jsonl"
"$NANOVL" batch --model "$model" "$jobs" --out "$out/results.jsonl" --no-progress "$@" &
pid=$!
i=0
while [ ! -s "$out/results.jsonl" ] && [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null; do sleep 0.01; i=$((i + 1)); done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
done_lines=$(wc -l < "$out/results.jsonl")
echo "   exit $rc; $done_lines result line(s) so far"
if [ "$done_lines" -ge "$n_jobs" ]; then
  # a fast model (the tiny test checkpoint) may finish before the signal lands: keep the first
  # line only, which is what a run stopped after its first job leaves
  head -n 1 "$out/results.jsonl" > "$out/first.jsonl" && mv "$out/first.jsonl" "$out/results.jsonl"
  echo "   (it finished before the signal: kept only the first line, as a stop would have left)"
fi
# a kill -9 in the middle of a write leaves a torn last line; the rerun drops it
printf '{"id":"clip-cut","line":6,"type":"ask","sta' >> "$out/results.jsonl"

echo "== 2. rerun with the same --out: the torn line is dropped, finished jobs are skipped"
"$NANOVL" batch --model "$model" "$jobs" --out "$out/results.jsonl" --no-progress "$@"
echo "   exit $?"
one_line_per_id "$out/results.jsonl" || exit 1
echo "   $out/results.jsonl: one line for each of the $n_jobs jobs"

echo "== 3. the same jobs as two shards (on a cluster: one per GPU or node, see samples/cluster/)"
rm -f "$out/results.0.jsonl" "$out/results.1.jsonl"
for s in 0 1; do
  "$NANOVL" batch --model "$model" "$jobs" --shard $s/2 --out "$out/results.$s.jsonl" --no-progress "$@"
  echo "   shard $s/2: exit $?, $(wc -l < "$out/results.$s.jsonl") result lines"
done
one_line_per_id "$out/results.0.jsonl" "$out/results.1.jsonl" || exit 1
echo "   shards together: one line for each of the $n_jobs jobs"
if command -v python3 >/dev/null 2>&1; then
  python3 samples/cluster/merge_results.py "$jobs" "$out/results.0.jsonl" "$out/results.1.jsonl" \
    --out "$out/merged.jsonl" || exit 1
fi
