#!/bin/sh
# The example client (samples/clients/nanovl_client.py) run from another directory than the
# server's, with a relative file name: it sends the absolute path, so the server finds the file
# (issue 17, item 7). Skips (77) without python3.
# usage: cli_client_relative.sh NANOVL MODEL_DIR IMAGE CLIENT
B=$1 M=$2 I=$3 C=$4
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
T=$(mktemp -d) || exit 1
mkdir "$T/srv" "$T/cli"
cp "$I" "$T/cli/pic.bmp"
(cd "$T/srv" && exec "$B" serve --model "$M" --socket "$T/s.sock" --quiet) &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$T"' EXIT
i=0
while [ ! -S "$T/s.sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
(cd "$T/cli" && timeout 60 python3 "$C" --socket "$T/s.sock" --max-tokens 3 --no-think pic.bmp "What is this?") > "$T/out" 2>&1
rc=$?
cat "$T/out"
# the server stops on SIGTERM with exit 0 (docs/api.md); any other status fails the test too
kill -TERM $srv 2>/dev/null
wait $srv
src=$?
[ $src = 0 ] || echo "server exit status $src after SIGTERM, expected 0"
[ $rc = 0 ] && [ $src = 0 ] && grep -q "done: 54 prompt tokens, 3 generated" "$T/out"
