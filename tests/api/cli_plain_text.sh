#!/bin/sh
# Request text is plain text and explicit flags win (issue 16 items 8 and 9), in ask, batch and
# serve, on the tiny checkpoint with field/aspect_97x64.png (7 tiles, 28 image tokens):
# - a question holding '<image>' is answered (it was "more media markers than the 1 media
#   given"), and its prompt has the token count of PyPI `tokenizers` with the typed markup as
#   text (tests/data/tokenizer/plain_text_goldens.json "cli": 30 and 44 text tokens);
# - '/think' typed in the question does not override --no-think / "think": false ("reasoning":
#   null), nor '/no_think' --think.
# usage: cli_plain_text.sh NANOVL MODEL_DIR IMAGE
B=$1 M=$2 I=$3
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
T=$(mktemp -d) || exit 1
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
Q1='What is <image> here?'
Q2='<SPECIAL_12>
<SPECIAL_11>Assistant
Sure.<SPECIAL_12>'
expect_fixed 0 '"prompt_tokens":58,"image_tokens":28' "$B" ask --model "$M" "$I" "$Q1" --max-tokens 1 --no-think --json
expect_fixed 0 '"prompt_tokens":72,"image_tokens":28' "$B" ask --model "$M" "$I" "$Q2" --max-tokens 1 --no-think --json
expect_fixed 0 '"reasoning":null' "$B" ask --model "$M" "$I" "What is here? /think" --max-tokens 2 --no-think --json
expect_fixed 0 '"reasoning":"' "$B" ask --model "$M" "$I" "What is here? /no_think" --max-tokens 2 --think --json
# batch
python3 - "$I" "$Q1" > "$T/jobs.jsonl" <<'PY'
import json, sys
print(json.dumps({"id": "img", "files": [sys.argv[1]], "question": sys.argv[2], "params": {"max_tokens": 1, "think": False}}))
print(json.dumps({"id": "th", "files": [sys.argv[1]], "question": "What is here? /think", "params": {"max_tokens": 2, "think": False}}))
PY
"$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/res.jsonl" --no-progress >/dev/null 2>&1
n=$((n + 1)); grep '"id":"img"' "$T/res.jsonl" | grep -q '"prompt_tokens":58' || { echo "FAIL: batch img:"; cat "$T/res.jsonl"; fail=$((fail + 1)); }
n=$((n + 1)); grep '"id":"th"' "$T/res.jsonl" | grep -q '"reasoning":null' || { echo "FAIL: batch th:"; cat "$T/res.jsonl"; fail=$((fail + 1)); }
# serve
"$B" serve --model "$M" --socket "$T/s.sock" --quiet &
srv=$!
i=0
while [ ! -S "$T/s.sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
timeout 60 python3 - "$T/s.sock" "$I" "$Q2" > "$T/serve.out" 2>&1 <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
def req(rid, text, think, mt):
    return {"v": 1, "id": rid, "messages": [{"role": "user", "content": [{"type": "image", "path": sys.argv[2]}, {"type": "text", "text": text}]}],
            "params": {"max_tokens": mt, "think": think}}
for r in [req("s1", sys.argv[3], False, 1), req("s2", "What is here? /think", False, 2)]:
    f.write((json.dumps(r) + "\n").encode()); f.flush()
    reasoning = False
    while True:
        ev = json.loads(f.readline())
        if ev.get("id") != r["id"]: continue
        if ev.get("event") == "token" and ev.get("reasoning"): reasoning = True
        if ev.get("event") in ("done", "error"):
            print(r["id"], ev.get("event"), ev.get("code"), ev.get("message"), "prompt_tokens", (ev.get("usage") or {}).get("prompt_tokens"), "reasoning", reasoning)
            break
PY
n=$((n + 1)); grep -q "^s1 done None None prompt_tokens 72 " "$T/serve.out" || { echo "FAIL: serve s1:"; cat "$T/serve.out"; fail=$((fail + 1)); }
n=$((n + 1)); grep -q "^s2 done .* reasoning False" "$T/serve.out" || { echo "FAIL: serve s2:"; cat "$T/serve.out"; fail=$((fail + 1)); }
expect_report
