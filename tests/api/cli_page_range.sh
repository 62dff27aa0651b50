#!/bin/sh
# A page range reaching past the document's end (issue 16 item 3) is refused with the page count,
# the same in every front end: ask, ocr and render on the command line, a batch job and a socket
# request. field/pages_2000.pdf has 2000 pages (pdfinfo); 1999-2001 was clamped to two pages.
# usage: cli_page_range.sh NANOVL MODEL_DIR PDF_2000
B=$1 M=$2 P=$3
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
T=$(mktemp -d) || exit 1
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
MSG="page range '1999-2001': 1999-2001 is outside the document's pages 1-2000 (it has 2000 pages)"
. "$(dirname "$0")/expect.sh"
expect_fixed 1 "$MSG" "$B" ask --model "$M" "$P" --pages 1999-2001 "What is on these pages?" --max-tokens 1 --no-think
expect_fixed 1 "$MSG" "$B" ask --model "$M" "$P" --pages 1999-2001 --per-page "What is on this page?" --max-tokens 1 --no-think
expect_fixed 1 "$MSG" "$B" ocr --model "$M" "$P" --pages 1999-2001 --max-tokens 1
expect_fixed 1 "$MSG" "$B" render "$P" --pages 1999-2001 --long-side 32 -o "$T/r"
expect_fixed 1 "page 2001 is outside the document's pages 1-2000 (it has 2000 pages)" "$B" render "$P" --pages 2001 --long-side 32 -o "$T/r"
# the last pages themselves still work
expect_fixed 0 "" "$B" render "$P" --pages 1999-2000 --long-side 32 -o "$T/r"
n=$((n + 1)); [ "$(ls "$T/r" | wc -l)" = 2 ] || { echo "FAIL: render 1999-2000 wrote $(ls "$T/r" | wc -l) files"; fail=$((fail + 1)); }
# batch: the job fails with the message, in the file's and in the job's own pages
printf '{"id":"a","files":["%s"],"question":"?","params":{"pages":"1999-2001"}}\n{"id":"b","files":[{"path":"%s","pages":"1999-2001"}],"question":"?"}\n' "$P" "$P" > "$T/jobs.jsonl"
"$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/res.jsonl" --no-progress --max-tokens 1 >/dev/null 2>&1
for id in a b; do
    n=$((n + 1))
    grep "\"id\":\"$id\"" "$T/res.jsonl" | grep -qF "$MSG" || { echo "FAIL: batch job $id:"; cat "$T/res.jsonl"; fail=$((fail + 1)); }
done
# serve: an error event with the message for the request's pages and for the part's pages
"$B" serve --model "$M" --socket "$T/s.sock" --quiet &
srv=$!
i=0
while [ ! -S "$T/s.sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
timeout 60 python3 - "$T/s.sock" "$P" > "$T/serve.out" 2>&1 <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
reqs = [
    {"v": 1, "id": "r1", "messages": [{"role": "user", "content": [{"type": "pdf", "path": sys.argv[2]}, {"type": "text", "text": "?"}]}], "params": {"max_tokens": 1, "pages": "1999-2001"}},
    {"v": 1, "id": "r2", "messages": [{"role": "user", "content": [{"type": "pdf", "path": sys.argv[2], "pages": "1999-2001"}, {"type": "text", "text": "?"}]}], "params": {"max_tokens": 1}},
]
for r in reqs:
    f.write((json.dumps(r) + "\n").encode()); f.flush()
    while True:
        ev = json.loads(f.readline())
        if ev.get("id") == r["id"] and ev.get("event") in ("done", "error"):
            print(r["id"], ev.get("event"), ev.get("code"), ev.get("message")); break
PY
for id in r1 r2; do
    n=$((n + 1))
    grep "^$id error invalid_argument" "$T/serve.out" | grep -qF "$MSG" || { echo "FAIL: serve $id:"; cat "$T/serve.out"; fail=$((fail + 1)); }
done
expect_report
