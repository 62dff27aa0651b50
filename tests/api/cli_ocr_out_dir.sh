#!/bin/sh
# `nanovl ocr --out-dir DIR`: a file per input, DIR/NAME.md (.jsonl with --json), in one run.
# - Each file equals `nanovl ocr INPUT` run alone on that input (Markdown streamed, --parallel 2,
#   --json); an input none of whose pages can be read gets no file and is named in the summary,
#   and the exit status is 1. A long input name (the temporary file's name is short) works.
# - --resume reads only the inputs whose file is not in DIR or is older than the input (a removed
#   file is made again, equal); other options are refused; parts a killed run left are removed.
#   --retry-failed reads again the inputs whose files hold failed pages (not the others). A file
#   from another input of the same name is refused; a name with a newline is resumed.
# - SIGINT: the files done stay, the one being written is left out (no part file), exit 130; so
#   with a second SIGINT's immediate exit; a second run on DIR meanwhile is refused.
# - A file that cannot be put in place (a folder with its name) fails the run (exit 1) naming it.
# - Refused (exit 2): -o beside it, two inputs with one name, DIR a regular file, an output that is
#   an input, an empty DIR name.
# - ocr -o --parallel 2: a failed image's error under its marker, as streamed.
# usage: cli_ocr_out_dir.sh NANOVL MODEL_DIR MEDIA_DIR (tests/data/media/made)
B=$1 M=$2 MD=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
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
check "two files and the record, no part left" [ "$(ls -A "$T/o1" | tr '\n' ' ')" = ".nanovl-ocr image.md two_pages.md " ]
check "two_pages.md = the PDF read alone" cmp -s "$T/o1/two_pages.md" "$T/alone-two_pages.pdf.md"
check "image.md = the image read alone" cmp -s "$T/o1/image.md" "$T/alone-image.bmp.md"
check "the broken PDF's error on stderr" grep -q "broken.pdf: damaged PDF" "$T/err"
check "the PDF's two pages" [ "$(grep -c '^<!-- page [12]: ' "$T/o1/two_pages.md")" = 2 ]
check "the summary names the unread input" grep -q "2 files written to $T/o1; could not be read (no file): $T/broken.pdf$" "$T/err"
timeout 120 "$B" ocr $A --parallel 2 "$P" "$I" --out-dir "$T/par" > /dev/null 2>&1 < /dev/null
check "--parallel 2: the same files" sh -c "cmp -s '$T/par/two_pages.md' '$T/alone-two_pages.pdf.md' && cmp -s '$T/par/image.md' '$T/alone-image.bmp.md'"
timeout 120 "$B" ocr $A --json "$P" "$I" --out-dir "$T/js" > /dev/null 2>&1 < /dev/null
untimed() { sed 's/"timings_s":{[^}]*}//' "$@"; }  # (seconds differ from run to run)
a=$(untimed "$T/js/two_pages.jsonl" "$T/js/image.jsonl") b=$(untimed "$T/alone-two_pages.pdf.jsonl" "$T/alone-image.bmp.jsonl")
check "--json: NAME.jsonl, equal to each input alone (but the timings)" [ -n "$a" -a "$a" = "$b" ]
check "--json: a line per page" [ "$(wc -l < "$T/js/two_pages.jsonl")" = 2 ]

# 2. --resume: only the inputs whose file is missing (or older than the input) are read; the
# broken PDF, which got no file, is read again (and fails again)
rm "$T/o1/image.md"
echo "kept" >> "$T/o1/two_pages.md"  # (a file in DIR is not read again, so not rewritten)
touch "$T/o1/.nanovl-ocr-part-Ab12Cd"  # (a part a killed run left)
expect 1 "1 of 3 inputs is in $T/o1 already; reading the others" "$B" ocr $A "$P" "$I" "$T/broken.pdf" --out-dir "$T/o1" --resume
check "--resume: image.md made again, equal" cmp -s "$T/o1/image.md" "$T/alone-image.bmp.md"
check "--resume: two_pages.md not touched" sh -c "tail -1 '$T/o1/two_pages.md' | grep -qx kept"
check "--resume: the killed run's part removed" [ ! -e "$T/o1/.nanovl-ocr-part-Ab12Cd" ]
expect 1 "2 of 3 inputs are in $T/o1 already; reading the others" "$B" ocr $A "$P" "$I" "$T/broken.pdf" --out-dir "$T/o1" --resume
cp "$I" "$T/pic.bmp"
expect 0 "1 file written" "$B" ocr $A "$T/pic.bmp" --out-dir "$T/o1" --resume
sleep 0.05; touch "$T/pic.bmp"  # (changed since its file was written)
expect 0 "1 file written" "$B" ocr $A "$T/pic.bmp" --out-dir "$T/o1" --resume
expect 0 "1 of 1 input is in $T/o1 already: nothing to do" "$B" ocr $A "$T/pic.bmp" --out-dir "$T/o1" --resume
expect 2 "pic.md was written with another model or other options" "$B" ocr $A --max-tokens 7 "$T/pic.bmp" --out-dir "$T/o1" --resume
# each file's own options are recorded: a later run with other ones does not vouch for it
expect 0 "1 file written" "$B" ocr $A --prompt "Say X." "$P" --out-dir "$T/o7"
expect 0 "1 file written" "$B" ocr $A "$I" --out-dir "$T/o7"
expect 2 "two_pages.md was written with another model or other options" "$B" ocr $A "$P" "$I" --out-dir "$T/o7" --resume
echo "stray" > "$T/o7/stray.md" && cp "$I" "$T/stray.bmp"
expect 2 "stray.md was written by another program" "$B" ocr $A "$T/stray.bmp" --out-dir "$T/o7" --resume
# --retry-failed: a file holding a page that failed (its renderer crashed) is kept by --resume,
# which says so and exits 1, and read again whole by --retry-failed (then equal to the input
# read alone); the limits are not part of the options a file is written with
NVL_TEST_RENDERER_ABORT_PAGE=2 timeout 120 "$B" ocr $A "$P" "$I" --out-dir "$T/o8" > /dev/null 2> "$T/err8" < /dev/null
check "a page failed: exit 1, the file written, the failure recorded" sh -c "grep -q 'pages failed in $P (1 of 2)' '$T/err8' && grep -q '^[0-9a-f]*:[0-9a-f]*/1 two_pages.md$' '$T/o8/.nanovl-ocr'"
expect 1 "2 of 2 inputs are in $T/o8 already (pages failed in 1 of them: --retry-failed reads it again): nothing to do" \
    "$B" ocr $A "$P" "$I" --out-dir "$T/o8" --resume
cp "$T/o8/image.md" "$T/o8-image.before" && sleep 0.05
expect 0 "--retry-failed: reading 1 input again whose file holds pages that failed" "$B" ocr $A "$P" "$I" --out-dir "$T/o8" \
    --retry-failed --page-timeout 100
check "--retry-failed: two_pages.md now = the PDF read alone" cmp -s "$T/o8/two_pages.md" "$T/alone-two_pages.pdf.md"
check "--retry-failed: image.md (no failure) not written again" sh -c "[ ! '$T/o8/image.md' -nt '$T/o8-image.before' ]"
expect 0 "2 of 2 inputs are in $T/o8 already: nothing to do" "$B" ocr $A "$P" "$I" --out-dir "$T/o8" --retry-failed
expect 2 "--retry-failed needs -o FILE" "$B" ocr $A "$P" --retry-failed
# files kept that hold failed pages make the exit status 1 though other inputs were read; a retry
# that reads none of an input's pages keeps its earlier file (said so)
NVL_TEST_RENDERER_ABORT_PAGE=2 timeout 120 "$B" ocr $A "$P" --out-dir "$T/o11" > /dev/null 2>&1 < /dev/null
cp "$I" "$T/pic2.bmp"
expect 1 "1 of 2 inputs is in $T/o11 already (pages failed in 1 of them" "$B" ocr $A "$P" "$T/pic2.bmp" --out-dir "$T/o11" --resume
cp "$T/o11/two_pages.md" "$T/o11-before"
expect 1 "could not be read (no file): $P (its earlier file kept)" "$B" --max-megapixels 0.001 ocr $A "$P" --out-dir "$T/o11" --retry-failed
check "a retry that read nothing keeps the earlier file" cmp -s "$T/o11/two_pages.md" "$T/o11-before"
# a line an earlier nanovl wrote ("FP NAME", the name as it is) vouches for its file; a malformed
# one ("FP:xyz") for none
cp "$I" "$T/$(printf 'back\\slash.bmp')"
expect 0 "1 file written" "$B" ocr $A "$T/$(printf 'back\\slash.bmp')" --out-dir "$T/o12"
fp=$(head -c 16 "$T/o12/.nanovl-ocr")
printf '%s %s\n' "$fp" "$(printf 'back\\slash.md')" > "$T/o12/.nanovl-ocr"
expect 0 "1 of 1 input is in $T/o12 already: nothing to do" "$B" ocr $A "$T/$(printf 'back\\slash.bmp')" --out-dir "$T/o12" --resume
printf '%s:xyz/abc %s\n' "$fp" "$(printf 'back\\slash.md')" > "$T/o12/.nanovl-ocr"
expect 2 "was written by another program" "$B" ocr $A "$T/$(printf 'back\\slash.bmp')" --out-dir "$T/o12" --resume
# the record names each file's input: one of the same name from another folder is not taken for
# it (refused, named); a name with a newline is recorded escaped and resumed
mkdir -p "$T/da" "$T/db" && cp "$P" "$T/da/scan.pdf" && cp "$I" "$T/db/scan.bmp" && touch -d 2020-01-01 "$T/db/scan.bmp"
expect 0 "1 file written" "$B" ocr $A "$T/da/scan.pdf" --out-dir "$T/o9"
expect 2 "scan.md was written from another input than '$T/db/scan.bmp'; run without --resume to write it again (or remove it)" \
    "$B" ocr $A "$T/db/scan.bmp" --out-dir "$T/o9" --resume
nl="$T/a
b.bmp"
cp "$I" "$nl"
expect 0 "1 file written" "$B" ocr $A "$nl" --out-dir "$T/o9"
expect 0 "1 of 1 input is in $T/o9 already: nothing to do" "$B" ocr $A "$nl" --out-dir "$T/o9" --resume
# a record that cannot be read or written is named (not DIR)
mkdir -p "$T/o10/.nanovl-ocr"
expect 1 "cannot write $T/o10/.nanovl-ocr: Is a directory" "$B" ocr $A "$I" --out-dir "$T/o10"
expect 1 "cannot read $T/o10/.nanovl-ocr: Is a directory" "$B" ocr $A "$I" --out-dir "$T/o10" --resume
if [ -d /sys/kernel ]; then  # (mkdir there fails, not with ENOENT: the cause is kept, not lstat's)
    "$B" ocr $A "$I" --out-dir /sys/kernel/nanovl-test/x > /dev/null 2> "$T/err10"
    check "a folder that cannot be made: mkdir's cause" sh -c "grep -q 'cannot make the folder' '$T/err10' && ! grep -q 'No such file' '$T/err10'"
fi

# 3. refusals
expect 2 "give one of them" "$B" ocr $A "$P" -o "$T/x.md" --out-dir "$T/o2"
mkdir -p "$T/sub" && cp "$I" "$T/sub/two_pages.bmp"
expect 2 "would both be written to $T/o3/two_pages.md" "$B" ocr $A "$P" "$T/sub/two_pages.bmp" --out-dir "$T/o3"
touch "$T/file"
expect 2 "--out-dir '$T/file' is not a directory" "$B" ocr $A "$P" --out-dir "$T/file"
expect 2 "--out-dir needs a folder's name" "$B" ocr $A "$P" --out-dir ""
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
check "SIGINT: nothing else in DIR (no part file)" [ "$(ls -A "$T/int" | tr '\n' ' ')" = ".nanovl-ocr two_pages.md " ]
check "SIGINT: the summary" grep -q "1 file written to $T/int" "$T/int.err"
# with --parallel 2 too: the PDF's file is made whole once its last page is written, not when the
# next input's first page comes (a SIGINT while that one is read kept nothing)
NVL_TEST_MEDIA_DELAY="slow.bmp:6000" "$B" ocr $A --parallel 2 "$P" "$T/slow.bmp" --out-dir "$T/intp" > /dev/null 2> /dev/null < /dev/null &
pid=$!
i=0
# (up to 10 s for the PDF, as above: 3 s ran out under ASan beside other tests, and the signal then
# came before the file was made)
while [ ! -f "$T/intp/two_pages.md" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid
wait $pid
check "--parallel 2, SIGINT: the PDF's file kept, whole" cmp -s "$T/intp/two_pages.md" "$T/alone-two_pages.pdf.md"
# a second SIGINT during a step nothing interrupts exits at once, and leaves no part either
NVL_TEST_MEDIA_DELAY="slow.bmp:4000" "$B" ocr $A "$P" "$T/slow.bmp" --out-dir "$T/int2" > /dev/null 2> "$T/int2.err" < /dev/null &
pid=$!
i=0
while [ ! -f "$T/int2/two_pages.md" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.5
kill -INT $pid
sleep 0.2
kill -INT $pid
wait_gone $pid
wait $pid
rc=$?
check "a second SIGINT: exit 130 at once (got $rc after $i ticks)" [ "$rc" = 130 -a $i -lt 10 ]
check "a second SIGINT: no part file left" [ "$(ls -A "$T/int2" | tr '\n' ' ')" = ".nanovl-ocr two_pages.md " ]

# 5. a file that cannot be put in place (a folder has its name): exit 1 naming it, no crash, and
# the run stops there (the next input is not written)
mkdir -p "$T/o5/image.md/sub"
expect 1 "cannot write $T/o5/image.md: " "$B" ocr $A "$I" "$P" --out-dir "$T/o5"
check "the rename's failure: nothing else written, no part" [ "$(ls -A "$T/o5" | tr '\n' ' ')" = ".nanovl-ocr image.md " ]
# a name as long as a file name may be (its temporary name is short)
L=$(printf 'x%.0s' $(seq 247))
cp "$I" "$T/$L.bmp"
expect 0 "1 file written" "$B" ocr $A "$T/$L.bmp" --out-dir "$T/o6"
check "the long name's file" grep -q "^<!-- image: $T/$L.bmp -->" "$T/o6/$L.md"

# a DIR whose parents are missing is made with them; when no file is written the folders the run
# made are removed again (as -o OUT is not made when no page begins), not those that were there;
# an error comment keeps a flag's "--"
expect 0 "1 file written to $T/made/er/dir/" "$B" ocr $A "$I" --out-dir "$T/made/er/dir/"
check "the folders made with their file" [ -f "$T/made/er/dir/image.md" ]
mkdir "$T/deep"
expect 1 "no file written; the folder was not kept; could not be read (no file): $P" "$B" ocr $A --max-megapixels 0.001 "$P" --out-dir "$T/deep/er/dir/"
check "the folders the run made are gone, the one there before is kept" sh -c "[ -d '$T/deep' ] && [ -z \"\$(ls -A '$T/deep')\" ]"
# ... told apart by what was made, not by counting back along the name ("n1/../keep" made n1, not keep)
mkdir -p "$T/dd/keep"
expect 1 "no file written" "$B" ocr $A --max-megapixels 0.001 "$P" --out-dir "$T/dd/n1/../keep"
check "'..' in DIR: the empty folder that was there kept, the one made removed" sh -c "[ -d '$T/dd/keep' ] && [ ! -e '$T/dd/n1' ]"
expect 1 "no file written" "$B" ocr $A --max-megapixels 0.001 "$P" --out-dir "$T/dd/t2/./z/../w"
check "'.' and '..' in DIR: every folder made removed" sh -c "[ \"\$(ls -A '$T/dd')\" = keep ]"
timeout 60 "$B" ocr $A --max-megapixels 0.001 --pages 1 "$P" > "$T/mp.md" 2> /dev/null < /dev/null
cp "$I" "$T/x-->y.bmp" && head -c 50 "$I" > "$T/x-->y.bmp"  # (a damaged image whose name would end the comment)
timeout 60 "$B" ocr $A "$T/x-->y.bmp" > "$T/cm.md" 2> /dev/null < /dev/null
check "a '-->' in a marker and an error comment is escaped" sh -c "[ \"\$(grep -c 'x--&gt;y.bmp' '$T/cm.md')\" = 2 ] && [ \"\$(grep -o -- '-->' '$T/cm.md' | wc -l)\" = 2 ]"
check "the error comment names --max-megapixels as typed" grep -q "exceeds the limit of 1000 (--max-megapixels) (ask for a smaller long side) -->" "$T/mp.md"

# 6. ocr -o with --parallel 2: a failed image's error comes under its marker, as streamed
head -c 100 "$I" > "$T/bad.bmp"
timeout 120 "$B" ocr $A "$T/bad.bmp" "$P" > "$T/s1.md" 2> /dev/null < /dev/null
timeout 120 "$B" ocr $A --parallel 2 "$T/bad.bmp" "$P" > "$T/s2.md" 2> /dev/null < /dev/null
check "--parallel 2 = streamed, a failed image's marker included" sh -c "cmp -s '$T/s1.md' '$T/s2.md' && grep -q '^<!-- image: $T/bad.bmp -->' '$T/s2.md'"
expect_report
