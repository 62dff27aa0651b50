#!/bin/sh
# CI for samples/cluster on the tiny checkpoint: slurm.sbatch run as array tasks 0..2 of 3, the
# Kubernetes Job's own command line run for every completion index, and merge_results.py over
# each set (one line per job id; a missing shard and a duplicate line are found). Exit 77
# (skipped) without python3.
# usage: cluster.sh NANOVL MODEL_DIR SAMPLES_DIR
B=$1 M=$2 S=$3 fail=0
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
root=$(cd "$S/.." && pwd)
jobs=samples/batch/jobs.jsonl     # names the media relative to the repository root
cd "$root" || exit 1
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# Slurm: the script itself, as array tasks 0..2 of --array=0-2
for i in 0 1 2; do
  SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=3 NANOVL=$B NANOVL_MODEL=$M JOBS=$jobs RESULTS_DIR=$T/slurm \
    sh "$S/cluster/slurm.sbatch" --max-tokens 2 >> "$T/log" 2>&1 || bad "slurm task $i: exit $?"
done
python3 "$S/cluster/merge_results.py" "$jobs" "$T"/slurm/results.*.jsonl --out "$T/merged.jsonl" > "$T/m" 2>&1 \
  && grep -q '^7 jobs, 3 results files: 7 ok; 0 problems' "$T/m" && [ "$(wc -l < "$T/merged.jsonl")" = 7 ] \
  && ok "slurm: 3 shards merged, one line per job" || { bad "slurm merge"; cat "$T/m" "$T/log"; }
# a shard that did not run, and a line twice: found, exit 1
python3 "$S/cluster/merge_results.py" "$jobs" "$T/slurm/results.0.jsonl" "$T/slurm/results.1.jsonl" > "$T/m" 2>&1
[ $? = 1 ] && grep -q 'problem: .*: no result line' "$T/m" && ok "a missing shard is found" || { bad "missing shard"; cat "$T/m"; }
python3 "$S/cluster/merge_results.py" "$jobs" "$T"/slurm/results.*.jsonl "$T/slurm/results.0.jsonl" > "$T/m" 2>&1
[ $? = 1 ] && grep -q 'problem: .*: 2 result lines' "$T/m" && ok "a duplicate line is found" || { bad "duplicate"; cat "$T/m"; }
# a results file that does not exist (a shard never started): a problem named, not a traceback
python3 "$S/cluster/merge_results.py" "$jobs" "$T"/slurm/results.*.jsonl "$T/slurm/results.9.jsonl" > "$T/m" 2>&1
[ $? = 1 ] && grep -q "problem: .*results.9.jsonl: cannot be read" "$T/m" && ! grep -q Traceback "$T/m" \
  && ok "a missing results file is a problem" || { bad "missing results file"; cat "$T/m"; }
# a garbled line beside complete results (a torn write a rerun went past): a warning, exit 0
cp "$T/slurm/results.0.jsonl" "$T/garbled.jsonl"
printf '{"id":"half' >> "$T/garbled.jsonl" && printf '\n' >> "$T/garbled.jsonl"
python3 "$S/cluster/merge_results.py" "$jobs" "$T/garbled.jsonl" "$T/slurm/results.1.jsonl" "$T/slurm/results.2.jsonl" \
  > "$T/m" 2>&1 && grep -q "warning: .*garbled.jsonl:.*not a result line" "$T/m" \
  && ok "a garbled line beside every job's result: a warning" || { bad "garbled line"; cat "$T/m"; }
# a manifest whose lines start with a UTF-8 byte order mark: the same ids as nanovl batch's
printf '\357\273\277{"id":"a","question":"Name a colour.","params":{"max_tokens":2}}\n\357\273\277{"question":"Name a fruit.","params":{"max_tokens":2}}\n' > "$T/bom.jsonl"
"$B" batch --model "$M" "$T/bom.jsonl" --out "$T/bom.res" --no-progress >> "$T/log" 2>&1 || bad "batch on a BOM manifest: exit $?"
python3 "$S/cluster/merge_results.py" "$T/bom.jsonl" "$T/bom.res" > "$T/m" 2>&1 && grep -q "^2 jobs, 1 results files: 2 ok; 0 problems" "$T/m" \
  && ok "a BOM manifest merges" || { bad "BOM manifest"; cat "$T/m" "$T/bom.res"; }

# Kubernetes: the Job's command, with its paths pointed here, for every completion index
y=$S/cluster/k8s-job.yaml
n=$(sed -n 's/^  completions: \([0-9]*\).*/\1/p' "$y")
cmd=$(sed -n 's/^ *command: \["sh", "-c", "\(.*\)"\]$/\1/p' "$y")
case $cmd in *"--shard \$JOB_COMPLETION_INDEX/$n "*) ok "k8s: completions $n = the N of --shard" ;; *) bad "k8s: completions $n, command: $cmd" ;; esac
cmd=$(echo "$cmd" | sed -e "s#^exec nanovl #exec '$B' #" -e "s#--model [^ ]*#--model '$M'#" \
  -e "s#/jobs/jobs.jsonl#$jobs#" -e "s#/results/#$T/k8s/#")
mkdir "$T/k8s"
i=0
while [ $i -lt "$n" ]; do
  JOB_COMPLETION_INDEX=$i sh -c "$cmd --max-tokens 2" >> "$T/log" 2>&1 || bad "k8s index $i: exit $?"
  i=$((i + 1))
done
python3 "$S/cluster/merge_results.py" "$jobs" "$T"/k8s/results.*.jsonl > "$T/m" 2>&1 \
  && grep -q "^7 jobs, $n results files: 7 ok; 0 problems" "$T/m" && ok "k8s: $n shards merged, one line per job" \
  || { bad "k8s merge"; cat "$T/m" "$T/log"; }
exit $fail
