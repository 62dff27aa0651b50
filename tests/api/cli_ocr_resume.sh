#!/bin/sh
# `nanovl ocr -o OUT --resume`: a run started with --resume and killed (SIGKILL, the worst case:
# nothing flushed at its end) after its first page, or interrupted (SIGINT: the page cut short is
# marked so), goes on from where it stopped when run again, and OUT ends byte for byte as an
# uninterrupted run's (Markdown, --json, and resumed with --parallel 2: the same text). Resuming a
# finished run does nothing (its exit status kept); an OUT with no record, other options, a
# file changed since it was read, a record of another version, or inputs that now give other
# pages (an encrypted PDF opened then, not now) are refused and OUT is left as it was (a file not
# yet read may change); OUT shorter than its record is refused; --resume without -o
# is a usage error. --retry-failed reads again from the first page that failed (a renderer crash,
# a limit since raised, or a damaged input since replaced). The pages of the PDF are held 3 s each as they are read
# (NVL_TEST_MEDIA_DELAY), so the run is killed while its second page is being read.
# usage: cli_ocr_resume.sh NANOVL MODEL_DIR IMAGE PDF [SHARED_MEDIA_DIR]
B=$1 M=$2 I=$3 P=$4 S=$5
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
cp "$I" "$T/image.bmp" && cp "$P" "$T/doc.pdf" || exit 1
I="$T/image.bmp" P="$T/doc.pdf"
# (no function: expect runs its command under timeout, and a killed background job must be nanovl)
OCR="$B ocr --model $M $I $P --max-tokens 8 --no-progress"

# kill_after_first OUT [ocr options]: runs ocr with the PDF held, kills it (-9) once page 1 is recorded
kill_after_first() {
    out=$1
    shift
    NVL_TEST_MEDIA_DELAY="doc.pdf:3000" $OCR -o "$out" --resume "$@" 2>/dev/null &
    pid=$!
    i=0
    while [ $i -lt 200 ] && ! grep -q "^U 0 " "$out.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
}

$OCR -o "$T/full.md" 2>/dev/null || { echo "FAIL: the uninterrupted run"; exit 1; }
$OCR --json -o "$T/full.jsonl" 2>/dev/null || { echo "FAIL: the uninterrupted --json run"; exit 1; }
n=$((n + 1)); [ ! -e "$T/full.md.progress" ] || { echo "FAIL: a run without --resume kept a progress record"; fail=$((fail + 1)); }

# killed after the image: the resumed run ends as the uninterrupted one
kill_after_first "$T/a.md"
n=$((n + 1)); [ -s "$T/a.md" ] && ! cmp -s "$T/a.md" "$T/full.md" || { echo "FAIL: the killed run is not cut short"; fail=$((fail + 1)); }
expect_fixed 0 "resuming $T/a.md after 1 page done" $OCR -o "$T/a.md" --resume
n=$((n + 1)); cmp -s "$T/a.md" "$T/full.md" && grep -q "^END 0$" "$T/a.md.progress" || {
    echo "FAIL: resumed Markdown differs from the uninterrupted run:"; diff "$T/a.md" "$T/full.md" | head -10; fail=$((fail + 1)); }
# the same with --json, and a Markdown run resumed with --parallel 2
kill_after_first "$T/a.jsonl" --json
expect_fixed 0 "resuming $T/a.jsonl after 1 page done" $OCR --json -o "$T/a.jsonl" --resume
n=$((n + 1)); sed 's/"timings_s":{[^}]*}//' "$T/a.jsonl" > "$T/x" && sed 's/"timings_s":{[^}]*}//' "$T/full.jsonl" > "$T/y" && cmp -s "$T/x" "$T/y" || {
    echo "FAIL: resumed --json differs:"; diff "$T/x" "$T/y" | head -6; fail=$((fail + 1)); }
kill_after_first "$T/b.md"
expect_fixed 0 "resuming $T/b.md after 1 page done" $OCR -o "$T/b.md" --resume --parallel 2
n=$((n + 1)); cmp -s "$T/b.md" "$T/full.md" || { echo "FAIL: resumed with --parallel 2 differs"; fail=$((fail + 1)); }

# interrupted (SIGINT): the page cut short is marked so, then resumed away
NVL_TEST_MEDIA_DELAY="doc.pdf:3000" $OCR -o "$T/c.md" --resume 2>/dev/null &
pid=$!
i=0
while [ $i -lt 200 ] && ! grep -q "^U 0 " "$T/c.md.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid
wait $pid
rc=$?
n=$((n + 1)); [ $rc = 130 ] && grep -q "interrupted: this page is incomplete" "$T/c.md" || {
    echo "FAIL: SIGINT: exit $rc, $(tail -c 200 "$T/c.md")"; fail=$((fail + 1)); }
expect_fixed 0 "resuming $T/c.md after 1 page done" $OCR -o "$T/c.md" --resume
n=$((n + 1)); cmp -s "$T/c.md" "$T/full.md" || { echo "FAIL: resumed after SIGINT differs"; diff "$T/c.md" "$T/full.md" | head; fail=$((fail + 1)); }

# a finished run: nothing to do, untouched; an OUT with no record (not written with --resume): refused
expect_fixed 0 "$T/a.md is complete (3 pages, 0 failed): nothing to do" $OCR -o "$T/a.md" --resume
n=$((n + 1)); cmp -s "$T/a.md" "$T/full.md" || { echo "FAIL: a finished OUT was changed"; fail=$((fail + 1)); }
cp "$T/full.md" "$T/d.md"
expect_fixed 1 "has no progress record ($T/d.md.progress): it was not written by nanovl ocr --resume" $OCR -o "$T/d.md" --resume
expect_fixed 1 "nanovl ocr: --retry-failed: $T/d.md has no progress record" $OCR -o "$T/d.md" --retry-failed
n=$((n + 1)); cmp -s "$T/d.md" "$T/full.md" || { echo "FAIL: an OUT without a record was changed"; fail=$((fail + 1)); }
# a failure recorded before (a file that cannot be read, first) keeps the exit status 1 when the
# rest is resumed, and when a finished run is resumed
NVL_TEST_MEDIA_DELAY="doc.pdf:3000" "$B" ocr --model "$M" "$T/missing.pdf" "$I" "$P" --max-tokens 8 --no-progress \
    -o "$T/h.md" --resume 2>/dev/null &
pid=$!
i=0
while [ $i -lt 200 ] && ! grep -q "^U 1 " "$T/h.md.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
expect_fixed 1 "resuming $T/h.md after 2 pages done" "$B" ocr --model "$M" "$T/missing.pdf" "$I" "$P" --max-tokens 8 --no-progress -o "$T/h.md" --resume
expect_fixed 1 "$T/h.md is complete (4 pages, 1 failed): nothing to do" "$B" ocr --model "$M" "$T/missing.pdf" "$I" "$P" --max-tokens 8 --no-progress -o "$T/h.md" --resume
# --retry-failed: the PDF's first page failed (its renderer crashed) and the run was killed after
# it, then resumed (the record written again, the image's end kept): the finished run says how to
# read it again; --retry-failed goes on from that page, the image kept; OUT then equals a run
# without failures
NVL_TEST_RENDERER_ABORT_PAGE=1 NVL_TEST_MEDIA_DELAY="doc.pdf:2000" $OCR -o "$T/r.md" --resume 2>/dev/null &
pid=$!
i=0
while [ $i -lt 300 ] && ! grep -q "^U 1 " "$T/r.md.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
check "the PDF's page 1 recorded as failed" grep -q "^U 1 [0-9]* 0 1 " "$T/r.md.progress"
expect_fixed 1 "resuming $T/r.md after 2 pages done" $OCR -o "$T/r.md" --resume
expect_fixed 1 "$T/r.md is complete (3 pages, 1 failed): nothing to do (--retry-failed reads them again)" $OCR -o "$T/r.md" --resume
expect_fixed 0 "--retry-failed: 1 page in $T/r.md failed; reading again from the run's page 2 of 3" $OCR -o "$T/r.md" --retry-failed
expect_fixed 0 "$T/r.md is complete (3 pages, 0 failed): nothing to do" $OCR -o "$T/r.md" --retry-failed
check "--retry-failed: OUT = the uninterrupted run" cmp -s "$T/r.md" "$T/full.md"
# the limits may differ: pages past --max-megapixels failed, read again without it
expect_fixed 1 "exceeds the limit of 1000 (--max-megapixels)" $OCR --max-megapixels 0.001 -o "$T/m.md" --resume
expect_fixed 0 "--retry-failed: 2 pages in $T/m.md failed; reading again from the run's page 2 of 3" $OCR -o "$T/m.md" --retry-failed
check "--retry-failed after other limits: OUT = the uninterrupted run" cmp -s "$T/m.md" "$T/full.md"
# a finished run's OUT emptied since: refused, not called complete
cp "$T/a.md" "$T/k.md" && cp "$T/a.md.progress" "$T/k.md.progress" && : > "$T/k.md"
expect_fixed 1 "$T/k.md is shorter than its progress record says (0 < " $OCR -o "$T/k.md" --resume
# one run on OUT at a time: a second --resume while the first runs is refused, the first goes on
NVL_TEST_MEDIA_DELAY="doc.pdf:3000" $OCR -o "$T/l.md" --resume 2>/dev/null &
pid=$!
i=0
while [ $i -lt 200 ] && ! grep -q "^U 0 " "$T/l.md.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
expect_fixed 1 "another nanovl ocr is writing $T/l.md" $OCR -o "$T/l.md" --resume
wait $pid
n=$((n + 1)); cmp -s "$T/l.md" "$T/full.md" || { echo "FAIL: the first run's OUT was changed by the refused one"; fail=$((fail + 1)); }
# a plain run over an OUT resumed before drops that run's record
$OCR -o "$T/a.md" 2>/dev/null
n=$((n + 1)); [ ! -e "$T/a.md.progress" ] || { echo "FAIL: a plain run left another run's record"; fail=$((fail + 1)); }
# other options, or a file read since changed: refused, OUT and its record left as they were; a
# file not yet read may change (the image was read, the PDF not)
kill_after_first "$T/e.md"
cp "$T/e.md" "$T/e.before" && cp "$T/e.md.progress" "$T/e2.md.progress" && cp "$T/e.md" "$T/e2.md"
expect_fixed 2 "was written for other files, model or options" $OCR -o "$T/e.md" --resume --max-tiles 2
touch -d "2001-01-01" "$P"
touch -d "2001-01-01" "$I"
expect_fixed 2 "--resume: $I changed since it was read into $T/e.md (the run's page 1: its size or time differ); run without --resume to start again" $OCR -o "$T/e.md" --resume
n=$((n + 1)); cmp -s "$T/e.md" "$T/e.before" && [ -s "$T/e.md.progress" ] || { echo "FAIL: a refused resume changed OUT"; fail=$((fail + 1)); }
kill_after_first "$T/e3.md"
touch -d "2002-01-01" "$P"
expect_fixed 0 "resuming $T/e3.md after 1 page done" $OCR -o "$T/e3.md" --resume
check "a file not yet read changed: resumed, OUT = the uninterrupted run" cmp -s "$T/e3.md" "$T/full.md"
# an input that is a symlink repointed before it is read: resumed (its pages are read from the
# file it names now); the one it names when its pages are kept must not change
ln -s doc.pdf "$T/link.pdf" && cp "$P" "$T/doc2.pdf" || exit 1
NVL_TEST_MEDIA_DELAY="link.pdf:3000" "$B" ocr --model "$M" "$I" "$T/link.pdf" --max-tokens 8 --no-progress -o "$T/s.md" --resume 2>/dev/null &
pid=$!
i=0
while [ $i -lt 200 ] && ! grep -q "^U 0 " "$T/s.md.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
ln -sf doc2.pdf "$T/link.pdf"
expect_fixed 0 "resuming $T/s.md after 1 page done" "$B" ocr --model "$M" "$I" "$T/link.pdf" --max-tokens 8 --no-progress -o "$T/s.md" --resume
# the same files named otherwise (resumed from their folder, by relative names): the names are
# written into OUT, so refused, and said so (not "other pages")
kill_after_first "$T/e4.md"
expect_fixed 2 "--resume: the run that wrote e4.md read its page 1 from a file named otherwise (the names are written into e4.md" \
    sh -c "cd '$T' && exec '$B' ocr --model '$M' image.bmp doc.pdf --max-tokens 8 --no-progress -o e4.md --resume"
# a record of another version (an earlier nanovl wrote 2, without the files' stamps): refused as such
sed -i '1s/progress 3 /progress 2 /' "$T/e2.md.progress"
expect_fixed 2 "--resume: $T/e2.md's progress record $T/e2.md.progress is of another version (2; this nanovl writes 3)" $OCR -o "$T/e2.md" --resume
# --retry-failed after the input that failed was fixed: the PDF was damaged (it failed whole), then
# replaced by the good one: read again as it is now, OUT = the uninterrupted run; a file kept
# (the image, read before the first failure) that changed since refuses it
cp "$P" "$T/good.pdf" && head -c 300 "$T/good.pdf" > "$P"
expect_fixed 1 "damaged PDF" $OCR -o "$T/x.md" --resume
cp "$T/x.md" "$T/y.md" && cp "$T/x.md.progress" "$T/y.md.progress"
cp "$T/good.pdf" "$P"
expect_fixed 1 "$T/x.md is complete (2 pages, 1 failed): nothing to do (--retry-failed reads them again)" $OCR -o "$T/x.md" --resume
expect_fixed 0 "--retry-failed: 1 page in $T/x.md failed; reading again from the run's page 2 of 2" $OCR -o "$T/x.md" --retry-failed
check "--retry-failed after the damaged input was fixed: OUT = the uninterrupted run" cmp -s "$T/x.md" "$T/full.md"
touch -d "2003-01-01" "$I"
expect_fixed 2 "--retry-failed: $I changed since it was read into $T/y.md (the run's page 1" $OCR -o "$T/y.md" --retry-failed
# OUT cut shorter than its record says: refused
kill_after_first "$T/f.md"
: > "$T/f.md"
expect_fixed 1 "is shorter than its progress record says" $OCR -o "$T/f.md" --resume
# OUT removed since: said so, and not made again (an empty one was left)
kill_after_first "$T/f2.md"
rm -f "$T/f2.md"
expect_fixed 1 "--resume: $T/f2.md is missing, and its progress record $T/f2.md.progress says" $OCR -o "$T/f2.md" --resume
check "a missing OUT is not made by the refused resume" [ ! -e "$T/f2.md" ]
expect_fixed 2 "--resume needs -o FILE" $OCR --resume
# inputs that now give other pages: an encrypted PDF opened with its password, then resumed
# without it (it fails as a whole: one unit where its pages were); refused, OUT untouched
E=$S/pdf/libreoffice-writer-password.pdf
if [ -n "$S" ] && [ -f "$E" ]; then
    cp "$E" "$T/secret.pdf"
    NVL_TEST_MEDIA_DELAY="image.bmp:3000" "$B" ocr --model "$M" "$T/secret.pdf" "$I" --max-tokens 8 --no-progress \
        --password openpassword -o "$T/g.md" --resume 2>/dev/null &
    pid=$!
    i=0
    while [ $i -lt 200 ] && ! grep -q "^U 0 " "$T/g.md.progress" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    cp "$T/g.md" "$T/g.before"
    expect_fixed 2 "the inputs now give other pages than the run that wrote $T/g.md (its page 1 differs" \
        "$B" ocr --model "$M" "$T/secret.pdf" "$I" --max-tokens 8 --no-progress -o "$T/g.md" --resume
    n=$((n + 1)); cmp -s "$T/g.md" "$T/g.before" || { echo "FAIL: a refused resume (other pages) changed OUT"; fail=$((fail + 1)); }
else
    echo "(../shared/media is absent: the encrypted PDF's check is skipped)"
fi
expect_report
