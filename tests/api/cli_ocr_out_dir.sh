#!/bin/sh
# `nanovl ocr --out-dir DIR`: a file per input, DIR/NAME.md (.jsonl with --json), in one run.
# - Each file equals `nanovl ocr INPUT` run alone on that input (Markdown streamed, --parallel 2,
#   --json); an input that cannot be read gets its error in its file, is named in the summary,
#   and the exit status is 1.
# - --resume reads only the inputs whose file is not in DIR (a removed file is made again, equal).
# - SIGINT: the files done stay, the one being written is left out (no part file), exit 130; a
#   second run on DIR meanwhile is refused.
# - Refused (exit 2): -o beside it, two inputs with one name, DIR a regular file, an output that is
#   an input.
# usage: cli_ocr_out_dir.sh NANOVL MODEL_DIR MEDIA_DIR (tests/data/media/made)
B=$1 M=$2 MD=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
check() { # DESCRIPTION CONDITION...
    d=$1
    shift
    n=$((n + 1))
    "$@" || { echo "FAIL: $d"; fail=$((fail + 1)); }
}
A="--model $M --max-tokens 6 --no-progress"
I="$MD/image.bmp" P="$MD/two_pages.pdf"
printf '%%PDF-1.4\nnot really a PDF\n' > "$T/broken.pdf"
for f in "$P" "$I" "$T/broken.pdf"; do
    timeout 120 "$B" ocr $A "$f" > "$T/alone-$(basename "$f").md" 2> /dev/null < /dev/null
    timeout 120 "$B" ocr $A --json "$f" > "$T/alone-$(basename "$f").jsonl" 2> /dev/null < /dev/null
done

# 1. a file per input, each equal to the input read alone
timeout 120 "$B" ocr $A "$P" "$I" "$T/broken.pdf" --out-dir "$T/o1" > "$T/stdout" 2> "$T/err" < /dev/null
rc=$?
check "exit 1 with an unreadable input (got $rc)" [ "$rc" = 1 ]
check "nothing on stdout" [ ! -s "$T/stdout" ]
check "three files, no part left" [ "$(ls -A "$T/o1" | tr '\n' ' ')" = "broken.md image.md two_pages.md " ]
check "two_pages.md = the PDF read alone" cmp -s "$T/o1/two_pages.md" "$T/alone-two_pages.pdf.md"
check "image.md = the image read alone" cmp -s "$T/o1/image.md" "$T/alone-image.bmp.md"
check "broken.md = the broken PDF read alone (its error)" cmp -s "$T/o1/broken.md" "$T/alone-broken.pdf.md"
check "broken.md holds the error" grep -q "<!-- error: bad_format" "$T/o1/broken.md"
check "the PDF's two pages" [ "$(grep -c '^<!-- page [12]: ' "$T/o1/two_pages.md")" = 2 ]
check "the summary names the failed input" grep -q "3 files written to $T/o1; pages failed in $T/broken.pdf (1 failed)" "$T/err"
timeout 120 "$B" ocr $A --parallel 2 "$P" "$I" --out-dir "$T/par" > /dev/null 2>&1 < /dev/null
check "--parallel 2: the same files" sh -c "cmp -s '$T/par/two_pages.md' '$T/alone-two_pages.pdf.md' && cmp -s '$T/par/image.md' '$T/alone-image.bmp.md'"
timeout 120 "$B" ocr $A --json "$P" "$I" --out-dir "$T/js" > /dev/null 2>&1 < /dev/null
untimed() { sed 's/"timings_s":{[^}]*}//' "$@"; }  # (seconds differ from run to run)
a=$(untimed "$T/js/two_pages.jsonl" "$T/js/image.jsonl") b=$(untimed "$T/alone-two_pages.pdf.jsonl" "$T/alone-image.bmp.jsonl")
check "--json: NAME.jsonl, equal to each input alone (but the timings)" [ -n "$a" -a "$a" = "$b" ]
check "--json: a line per page" [ "$(wc -l < "$T/js/two_pages.jsonl")" = 2 ]

# 2. --resume: only the inputs whose file is missing are read
rm "$T/o1/image.md"
cp "$T/o1/two_pages.md" "$T/keep.md"
echo "kept" >> "$T/o1/two_pages.md"  # (a file in DIR is not read again, so not rewritten)
expect 0 "2 of 3 inputs are in $T/o1 already; reading the others" "$B" ocr $A "$P" "$I" "$T/broken.pdf" --out-dir "$T/o1" --resume
check "--resume: image.md made again, equal" cmp -s "$T/o1/image.md" "$T/alone-image.bmp.md"
check "--resume: two_pages.md not touched" sh -c "tail -1 '$T/o1/two_pages.md' | grep -qx kept"
expect 0 "3 of 3 inputs are in $T/o1 already: nothing to do" "$B" ocr $A "$P" "$I" "$T/broken.pdf" --out-dir "$T/o1" --resume

# 3. refusals
expect 2 "give one of them" "$B" ocr $A "$P" -o "$T/x.md" --out-dir "$T/o2"
mkdir -p "$T/sub" && cp "$I" "$T/sub/two_pages.bmp"
expect 2 "would both be written to $T/o3/two_pages.md" "$B" ocr $A "$P" "$T/sub/two_pages.bmp" --out-dir "$T/o3"
touch "$T/file"
expect 2 "--out-dir '$T/file' is not a directory" "$B" ocr $A "$P" --out-dir "$T/file"
cp "$I" "$T/sub/pic.md"
expect 2 "the output $T/sub/pic.md is the input" "$B" ocr $A "$T/sub/pic.md" --out-dir "$T/sub"

# 4. SIGINT while the second input is read (held 3 s by the test knob): the first input's file
# stays, the second's is left out, no part file; another run on DIR meanwhile is refused
cp "$I" "$T/slow.bmp"
NVL_TEST_MEDIA_DELAY="slow.bmp:3000" "$B" ocr $A "$P" "$T/slow.bmp" --out-dir "$T/int" > /dev/null 2> "$T/int.err" < /dev/null &
pid=$!
i=0
while [ ! -f "$T/int/two_pages.md" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.3
expect 1 "another nanovl ocr is writing to $T/int" "$B" ocr $A "$I" --out-dir "$T/int"
kill -INT $pid
wait $pid
rc=$?
check "SIGINT: exit 130 (got $rc)" [ "$rc" = 130 ]
check "SIGINT: the first input's file stays, whole" cmp -s "$T/int/two_pages.md" "$T/alone-two_pages.pdf.md"
check "SIGINT: nothing else in DIR (no part file)" [ "$(ls -A "$T/int" | tr '\n' ' ')" = "two_pages.md " ]
check "SIGINT: the summary" grep -q "1 file written to $T/int" "$T/int.err"
expect_report
