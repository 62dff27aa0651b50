#!/bin/sh
# Edges of the CLI (issue 17): non-regular files refused without hanging or reading them, a
# missing question, "--", NaN / infinite / fractional numbers, per-command --help, invalid UTF-8
# in --json output, render paths, batch --out = the jobs file; the file "-" read from stdin (a pipe
# or a redirect) as the file itself.
# usage: cli_edges.sh NANOVL MODEL_DIR IMAGE
B=$1 M=$2 I=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
EXPECT_TIMEOUT=20
. "$(dirname "$0")/expect.sh"
mkfifo "$T/fifo" || exit 1
# 1. non-regular files: refused by name, at once (a FIFO without a writer would block forever)
expect 1 "fifo' is a FIFO" "$B" media-info "$T/fifo"
expect 1 "/dev/zero' is a character device" "$B" media-info /dev/zero
expect 1 "is a directory" "$B" media-info "$T"
expect 1 "fifo' is a FIFO" "$B" render "$T/fifo" -o "$T/r"
expect 1 "fifo' is a FIFO" "$B" ask --model "$M" "$T/fifo" "What is it?" --max-tokens 2
expect 1 "fifo' is a FIFO" "$B" ocr --model "$M" "$T/fifo" --max-tokens 2
printf '{"id":"f","files":["%s"],"question":"?"}\n' "$T/fifo" > "$T/jobs.jsonl"
expect 1 "shard 0/1: 1 job, 0 already done, 0 ok, 1 failed" "$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/res.jsonl" --no-progress
n=$((n + 1)); grep -q '"code":"io_error","message":"[^"]*fifo'"'"' is a FIFO' "$T/res.jsonl" || { echo "FAIL: batch FIFO job result"; cat "$T/res.jsonl"; fail=$((fail + 1)); }
expect 2 "jobs file is not a regular file" "$B" batch --model "$M" "$T/fifo" --out "$T/res2.jsonl"
expect 2 "out is not a regular file" "$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/fifo"
expect 1 "no-such-jobs.jsonl: No such file" "$B" batch --model "$M" "$T/no-such-jobs.jsonl" --out "$T/res3.jsonl"
# 10. --out is the jobs file (or a link to it): refused, the jobs file untouched
cp "$T/jobs.jsonl" "$T/keep.jsonl"
expect 2 "is the jobs file" "$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/jobs.jsonl"
ln -s jobs.jsonl "$T/link.jsonl"
expect 2 "is the jobs file" "$B" batch --model "$M" "$T/jobs.jsonl" --out "$T/link.jsonl"
n=$((n + 1)); cmp -s "$T/jobs.jsonl" "$T/keep.jsonl" || { echo "FAIL: the jobs file changed"; fail=$((fail + 1)); }
# 3. a missing question is an error; "--" ends the options
expect 2 "no question: '$I' is a file" "$B" ask --model "$M" "$I" --json
expect 2 "no question" "$B" ask --model "$M"
cp "$I" "$T/-dash.bmp"
(cd "$T" && expect 0 '"image_tokens":28' "$B" ask --model "$M" --max-tokens 2 --json -- -dash.bmp "-what is this?")
expect 0 "^image: 24x16" "$B" media-info -- "$I"
# 6. NaN, infinities and fractions refused before any work
for o in "--fps nan" "--evs nan" "--dpi nan" "--temperature nan" "--top-p nan" "--temperature inf" "--max-tokens -inf" \
         "--max-tiles 1.5" "--max-tokens 2.5" "--seed 1e400" "--evs 1"; do
    set -- $o
    expect 2 "$1 needs" "$B" ask --model "$M" "$I" "?" "$1" "$2"
done
expect 2 "needs an integer" "$B" ocr --model "$M" "$I" --max-tiles 2.5
# seeds: 0..2^53 - 1 everywhere, as requests and jobs files take them (JSON's doubles round above;
# the CLI took up to 1.8e19 and named no exact bound); '1e3' is 1000 (it was read as 1)
expect 2 "seed needs an integer in 0..9007199254740991, got 9007199254740992" "$B" ask --model "$M" "$I" "?" --seed 9007199254740992
expect 2 "seed needs an integer in 0..9007199254740991, got 18000000000000000000" "$B" batch --model "$M" "$T/keep.jsonl" --out "$T/x.jsonl" --seed 18000000000000000000
expect 2 "seed needs an integer in 0..9007199254740991" "$B" generate --model "$M" --ids "1 2" --seed 1e16
# sampling options at temperature 0 (greedy): a note, the command goes on (they were silently ignored)
expect 0 "note: --top-k, --seed only shape sampling, which --temperature above 0 turns on" "$B" ask --model "$M" "$I" "?" --max-tokens 2 --top-k 3 --seed 5
S1=$("$B" generate --model "$M" --ids "1 2 3" --max-tokens 6 --temperature 1.5 --seed 1e3 2>&1)
S2=$("$B" generate --model "$M" --ids "1 2 3" --max-tokens 6 --temperature 1.5 --seed 1000 2>&1)
S3=$("$B" generate --model "$M" --ids "1 2 3" --max-tokens 6 --temperature 1.5 --seed 1 2>&1)
check "--seed 1e3 is seed 1000, not 1 ('$S1' / '$S2' / '$S3')" test -n "$S1" -a "$S1" = "$S2" -a "$S1" != "$S3"
expect 2 "needs an integer" "$B" batch --model "$M" "$T/keep.jsonl" --out "$T/x.jsonl" --max-frames 1.5
expect 2 "needs a number" "$B" render "$I" -o "$T/r" --dpi nan
expect 2 "needs an integer" "$B" render "$I" -o "$T/r" --long-side 100.5
expect 2 "needs a number" "$B" generate --model "$M" --ids "1 2" --temperature nan
expect 2 "needs a number" "$B" embed --model "$M" "$I" --evs nan
expect 2 "needs an integer" "$B" bench --model "$M" --runs 1.5
expect 2 "needs a finite" "$B" serve --model "$M" --socket "$T/s" --rate nan
expect 2 "needs an integer" "$B" serve --model "$M" --socket "$T/s" --max-queue 1.5
expect 2 "max-batch must be 1..256" "$B" serve --model "$M" --socket "$T/s" --max-batch 300
expect 2 "needs an integer" "$B" serve --model "$M" --socket "$T/s" --max-batch 0
expect 2 "needs a finite" "$B" serve --model "$M" --socket "$T/s" --seq-mem nan
expect 2 "counts 1..256 separated by commas" "$B" bench --model "$M" --concurrency 1,x
expect 2 "counts 1..256 separated by commas" "$B" bench --model "$M" --concurrency 0
# (a review: '' ran with no counts and blamed the model's max_batch; a 17th count was dropped)
expect 2 "counts 1..256 separated by commas, got ''" "$B" bench --model "$M" --concurrency ""
expect 2 "counts 1..256 separated by commas, got '1,'" "$B" bench --model "$M" --concurrency 1,
expect 2 "at most 16 counts" "$B" bench --model "$M" --concurrency 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2
expect 2 "one file at a time ('$I' is a second)" "$B" bench --model "$M" "$I" "$I"
expect 2 "bench does not read stdin" "$B" bench --model "$M" -
# bench's synthetic page: a file of its own (mkstemps), unlinked at once (a review: a fixed name
# $TMPDIR/nanovl-bench-PID.png was written through a link planted there, and left by a signal)
mkdir -p "$T/btmp"
p0=$(sh -c 'echo $$') # (the pids after the 1000 ln processes: bench's among them, pids allowing)
for i in $(seq 1 1000); do ln -s "$T/victim" "$T/btmp/nanovl-bench-$((p0 + 1000 + i)).png"; done
TMPDIR="$T/btmp" timeout 120 "$B" bench --model "$M" --runs 1 --max-tokens 2 > "$T/bench.out" 2>&1 < /dev/null
check "bench on its synthetic page: exit 0 ($(tail -1 "$T/bench.out"))" [ $? = 0 ]
check "bench wrote through no planted link" [ ! -e "$T/victim" ]
check "bench left no file in TMPDIR" [ "$(find "$T/btmp" -type f | wc -l)" = 0 ]
rm -f "$T"/btmp/*
TMPDIR="$T/btmp" timeout -s INT 1 "$B" bench --model "$M" --runs 100000 --max-tokens 64 > /dev/null 2>&1 < /dev/null
check "bench stopped by SIGINT left no file in TMPDIR" [ "$(find "$T/btmp" -type f | wc -l)" = 0 ]
# tokenize / generate on bad input (a review): a stdin that cannot be read is not empty text; a
# NUL byte does not end the ids or a message quietly; a bad id is named; flags of another mode
expect 1 "stdin cannot be read: Is a directory" sh -c '"$1" tokenize --model "$2" < "$3"' sh "$B" "$M" "$T"
expect 1 "stdin cannot be read: Bad file descriptor" sh -c '"$1" tokenize --model "$2" --decode <&-' sh "$B" "$M"
expect 2 "stdin holds a NUL byte" sh -c 'printf "70\0 99" | "$1" tokenize --model "$2" --decode' sh "$B" "$M"
expect 1 "a string holds a NUL character" sh -c 'printf "%s" "[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]" | "$1" tokenize --model "$2" --chat' sh "$B" "$M"
expect 2 "'2147483648' is not a token id" sh -c 'echo "1 2147483648" | "$1" tokenize --model "$2" --decode' sh "$B" "$M"
expect 2 "'12abc' is not a token id" sh -c 'echo "12abc" | "$1" tokenize --model "$2" --decode' sh "$B" "$M"
expect 2 "--ids: 'x2' is not a token id" "$B" generate --model "$M" --ids "1 x2"
expect 2 "--model needs a value" "$B" tokenize --model
expect 2 "--decode and --chat are two modes" "$B" tokenize --model "$M" --decode --chat
expect 2 "--ids goes with --chat" "$B" tokenize --model "$M" --ids
expect 2 "--special goes with the default mode" "$B" tokenize --model "$M" --decode --special
expect 2 "--password needs a value" "$B" media-info "$I" --password
# (a walk through the README) `nanovl help CMD` is CMD's help; embed -o DIR/ names DIR/index.json
expect 0 "^usage: nanovl ask" "$B" help ask
expect 0 "^usage: nanovl serve" "$B" help serve
expect_fixed 0 "intermediates: $T/emb/index.json" "$B" embed --model "$M" "$I" -o "$T/emb/"
cp "$I" "$T/$(printf 'nl\nname.bmp')"
expect_fixed 0 "file: $T/nl\\nname.bmp" "$B" media-info "$T/$(printf 'nl\nname.bmp')"
# a page label is the document's text: escaped like a name (a label holding a newline forged a
# "page 9:" line); the PDF has no xref table (poppler rebuilds it)
printf '%%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R /PageLabels << /Nums [0 << /P (x\\npage 9: forged) >>] >> >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%%%EOF\n' > "$T/label.pdf"
expect_fixed 0 'page 1: 200.00 x 100.00 pt, label x\npage 9: forged, text layer no' "$B" media-info "$T/label.pdf"
check "a label's newline does not start a line" sh -c "! '$B' media-info '$T/label.pdf' | grep -q '^page 9'"
# media-info and render sample a video as ask does at any --fps / --max-frames (a review: they
# took neither, so ask at other settings could not be checked against them)
expect 0 "sampled at 5.0 fps: 3 frames: 0@0.000s 9@0.900s 19@1.900s" "$B" media-info --fps 5 --max-frames 3 "$(dirname "$I")/clip_2s.mp4"
expect 0 "frame-19.png 1.900s" "$B" render "$(dirname "$I")/clip_2s.mp4" -o "$T/fr5/" --fps 5 --max-frames 3
expect 0 '"frame_times_s":\[0,0.9,1.9\]' "$B" ask --model "$M" --json --fps 5 --max-frames 3 --max-tokens 1 "$(dirname "$I")/clip_2s.mp4" "?"
expect 2 "--fps and --max-frames sample videos" "$B" media-info --fps 5 "$I"
# render a video: every sampled frame written as a PNG with its time
V2="$(dirname "$I")/clip_2s.mp4"
expect 0 "frame-0.png 0.000s" "$B" render "$V2" -o "$T/fr/"
n=$((n + 1)); nf=$(ls "$T/fr" 2>/dev/null | grep -c '^frame-.*\.png$'); [ "$nf" -ge 2 ] || { echo "FAIL: render wrote $nf frames of the clip"; fail=$((fail + 1)); }
# ocr --parallel: pages read together, written whole and in order: the same Markdown as one at a time
P2="$(dirname "$I")/two_pages.pdf"
n=$((n + 1))
if "$B" ocr --model "$M" "$P2" "$I" --max-tokens 6 > "$T/o1.md" 2>/dev/null &&
   "$B" ocr --model "$M" "$P2" "$I" --max-tokens 6 --parallel 3 > "$T/o3.md" 2>/dev/null &&
   [ "$(grep -c '^<!-- ' "$T/o3.md")" = 3 ] && cmp -s "$T/o1.md" "$T/o3.md"; then :; else
    echo "FAIL: ocr --parallel 3 differs from one page at a time"; diff "$T/o1.md" "$T/o3.md" | head -5; fail=$((fail + 1))
fi
expect 2 "needs an integer" "$B" ocr --model "$M" "$P2" --parallel 0
# (a review) ocr reads each page alone: --skip-bad-pages was taken and did nothing; a page that
# does not fit the context is named, with OCR's remedies (it was told to shorten its question)
expect 2 "ocr: --skip-bad-pages is for questions" "$B" ocr --model "$M" "$P2" --skip-bad-pages
expect 2 "ocr: --fps samples videos, which ocr does not read" "$B" ocr --model "$M" "$P2" --fps 3
expect 2 "ocr: --evs samples videos, which ocr does not read" "$B" ocr --model "$M" "$P2" --evs 0.5
expect 1 "two_pages.pdf page 1 needs at least [0-9]* tokens at 1 tile per image (plus [0-9]* of the OCR prompt and 12 to answer), more than the context budget of 60: shorten the OCR prompt (--prompt / prompt), lower --max-tokens / max_tokens, or raise --max-context / max_context (the checkpoint's context: [0-9]* tokens)" \
    "$B" ocr --model "$M" "$P2" --max-tokens 12 --max-context 60
check "the OCR page's message gives no question's advice" sh -c "! grep -q 'shorten the text' '$T/out'"
long_prompt=$(for i in $(seq 1 300); do printf 'word '; done)
expect 1 "more than the context budget of 200: shorten the OCR prompt (--prompt / prompt), lower --max-tokens" \
    "$B" ocr --model "$M" "$I" --max-tokens 12 --max-context 200 --prompt "$long_prompt"
# no model: every command that loads one says so (usage, exit 2), NANOVL_MODEL unset
expect 2 "no model" env -u NANOVL_MODEL "$B" ask "$I" "What?"
expect 2 "no model" env -u NANOVL_MODEL "$B" ocr "$I"
expect 2 "no model" env -u NANOVL_MODEL "$B" batch "$T/keep.jsonl" --out "$T/nm.jsonl"
expect 2 "no model" env -u NANOVL_MODEL "$B" bench "$I"
expect 2 "no model" env -u NANOVL_MODEL "$B" serve --socket "$T/s"
# 13. each subcommand's --help is its own usage, on stdout, exit 0
for c in ask ocr serve batch bench inspect generate tokenize media-info render embed; do
    expect 0 "^usage: nanovl $c" "$B" "$c" --help
done
expect 0 "off for ocr" "$B" ocr --help
n=$((n + 1)); [ "$("$B" bench --help | grep -c '^  --max-tokens')" = 1 ] || { echo "FAIL: bench --help lists --max-tokens more than once"; fail=$((fail + 1)); }
expect 0 "rate 0..0.99" "$B" ask --help
expect 0 "^$T/rd/image.png 24x16" "$B" render "$I" -o "$T/rd/"
# 9. render's options (a review, 2026-11-30): no -o said nothing but the usage; --dpi beside
# --long-side was dropped without a word; a second file after "--" got the bare usage
expect 2 "^nanovl render: -o DIR is needed" "$B" render "$I"
expect 2 "both size the pages: give one" "$B" render "$I" -o "$T/rd2" --dpi 72 --long-side 100
expect 2 "one file at a time ('-o' is a second" "$B" render -o "$T/rd2" -- "$I" -o "$T/rd3"
# media-info on a PDF whose page cannot be read (a CropBox outside the MediaBox: no area): the
# page listed, the cause on stderr, exit 1 (was 0). No xref table: Poppler rebuilds it
printf '%%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/CropBox[1000 1000 1200 1200]>>endobj\ntrailer<</Root 1 0 R>>\n%%%%EOF\n' > "$T/crop.pdf"
expect 1 "page 1: unreadable" "$B" media-info "$T/crop.pdf"
expect 1 "^nanovl media-info: .*crop.pdf: damaged PDF: page 1 has size 0 x 0 pt" "$B" media-info "$T/crop.pdf"
# 8. invalid UTF-8 in the question: the --json line is still valid UTF-8 (U+FFFD for each bad byte)
q=$(printf 'Wh\377at\376?')
n=$((n + 1))
"$B" ask --model "$M" "$I" -q "$q" -q "ok?" --max-tokens 2 --json > "$T/j" 2>&1
rc=$?
if [ $rc != 0 ] || ! iconv -f UTF-8 -t UTF-8 "$T/j" >/dev/null 2>&1 || ! grep -q "\"question\":\"Wh$(printf '\357\277\275')at$(printf '\357\277\275')?\"" "$T/j"; then
    echo "FAIL: ask --json with invalid UTF-8 (exit $rc):"; head -c 600 "$T/j"; fail=$((fail + 1))
fi
# 14. --max-megapixels (every command): an image, a rendered page or a video frame above it fails
# with its size and the flag's name; raised, the same input is read (the image decoder's process
# gets the caller's limit). A PDF page rendered to a 1.5-megapixel PNG is the large image.
PDF="$(dirname "$I")/two_pages.pdf" V="$(dirname "$I")/clip_2s.mp4"
if "$B" render "$PDF" --pages 1 --long-side 1400 -o "$T/mp/" > /dev/null 2>&1; then
    big="$T/mp/page-1.png"  # 1082x1400 = 1514800 pixels
    expect 1 "1082x1400 = 1514800 pixels exceeds the limit of 1500000 (--max-megapixels)" \
        "$B" ask --model "$M" --max-tokens 2 --max-megapixels 1.5 "$big" "What is it?"
    expect 0 '"image_tokens"' "$B" ask --model "$M" --max-tokens 2 --json --max-megapixels 1.52 "$big" "What is it?"
    expect 0 "^image: 1082x1400" "$B" media-info "$big"
    expect 1 "exceeds the limit of 1000000" "$B" media-info --max-megapixels 1 "$big"
    expect 1 "page 1 would render at 1082x1400 = 1514800 pixels, which exceeds the limit of 1000000 (--max-megapixels) (ask for a smaller long side)" "$B" render "$PDF" --pages 1 --long-side 1400 -o "$T/mp2" --max-megapixels 1
    expect 1 "96x64 = 6144 pixels exceeds the limit of 6000" "$B" ask --model "$M" --max-tokens 2 --max-megapixels 0.006 "$V" "What happens?"
    expect 2 "max-megapixels needs a number in 0.001..100000" "$B" ask --model "$M" --max-megapixels 0 "$big" "What?"
else
    echo "note: no PDF support; the --max-megapixels checks are skipped"
fi
# raised above the default (100 megapixels): a 10050x10000 JPEG (ffmpeg's, 0.6 MB) is refused by
# default and read with --max-megapixels 101 (in the image decoder's process)
if command -v ffmpeg > /dev/null 2>&1 &&
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "color=c=gray:s=10050x10000" -frames:v 1 "$T/huge.jpg" < /dev/null; then
    expect 1 "10050x10000 = 100500000 pixels exceeds the limit of 100000000 (--max-megapixels)" "$B" media-info "$T/huge.jpg"
    expect 0 "^image: 10050x10000" "$B" media-info --max-megapixels 101 "$T/huge.jpg"
else
    echo "note: no ffmpeg; the check above the default --max-megapixels is skipped"
fi
# an MP4 cut short mid-packet (its index first, as +faststart writes it) is answered on the frames
# it holds, with the notice (a review: the partial last packet's decoding error failed it)
if command -v ffmpeg > /dev/null 2>&1 &&
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=64x48:rate=10 -t 10 -pix_fmt yuv420p \
        -movflags +faststart "$T/v10.mp4" < /dev/null; then
    sz=$(wc -c < "$T/v10.mp4")
    for pc in 50 70 93; do
        head -c $((sz * pc / 100)) "$T/v10.mp4" > "$T/vcut$pc.mp4"
        expect 0 "^cut short: the index lists 100 frames" "$B" media-info "$T/vcut$pc.mp4"
        # sampled at the clip's own rate, the last frame FFmpeg decodes from the cut file is the
        # last sampled (the decoder still held it when the cut packet failed: a review, dropped)
        if command -v ffprobe > /dev/null 2>&1; then
            want=$(ffprobe -v error -select_streams v -show_entries frame=pts_time -of csv=p=0 "$T/vcut$pc.mp4" 2> /dev/null |
                   tr -d , | sort -n | tail -1)
            got=$("$B" media-info --fps 10 --max-frames 1000 "$T/vcut$pc.mp4" 2> /dev/null | sed -n 's/.*@\([0-9.]*\)s$/\1/p')
            check "cut at $pc %: the last sampled frame ($got s) is FFmpeg's last decoded one ($want s)" \
                awk -v a="$got" -v b="$want" 'BEGIN { exit !(a != "" && a - b < 0.0005 && b - a < 0.0005) }'
        fi
    done
    expect 0 "the file is cut short: its index lists 100 frames, [0-9]* could be read; the answer covers those" \
        "$B" ask --model "$M" --max-tokens 2 "$T/vcut70.mp4" "What happens?"
    # a clip with one frame 20 ms early: the times shown never go back (a review: per-frame rules
    # mixed index * int(1000 / fps) / 1000 with real times, 9.867, 9.967, 9.933)
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=32x32:rate=30 -frames:v 321 \
        -vf "setpts='(N/30-eq(N,300)*0.02)/TB'" -fps_mode passthrough -video_track_timescale 30000 -pix_fmt yuv420p \
        -c:v libx264 -bf 0 "$T/jit.mp4" < /dev/null
    timeout 120 "$B" ask --model "$M" --max-tokens 1 --json --fps 30 --max-frames 400 "$T/jit.mp4" "?" > "$T/jit.json" 2> /dev/null < /dev/null
    # an audio-only MP4 is media nanovl does not read (unsupported), not a damaged file (bad_format)
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i sine=d=1 -c:a aac "$T/audio.mp4" < /dev/null
    expect 1 '"code":"unsupported","message":"[^"]*audio.mp4: no video stream (the container has 1 stream: audio)' \
        "$B" ask --model "$M" --json "$T/audio.mp4" "?"
    check "frame times of a clip with a jittered frame never decrease" sh -c \
        'sed -n "s/.*\"frame_times_s\":\[\([^]]*\)\].*/\1/p" "$1" | tr , "\n" |
         awk "NR > 1 && \$1 < p { bad = 1 } { p = \$1; n++ } END { exit bad || n < 300 }"' - "$T/jit.json"
else
    echo "note: no ffmpeg; the video cut mid-packet is not checked"
fi
# 15. the global options before the command too; --dpi beside --long-side refused as render does
# (ask, ocr, and a request's params), not one of them dropped; one token: no decode rate
expect 0 "^nanovl " "$B" --backend cpu version
expect 0 "^image: 24x16" "$B" --max-megapixels 0.001 --page-timeout 5 media-info "$I"
expect 2 "max-megapixels needs a number in 0.001..100000" "$B" --max-megapixels 0.0003 media-info "$I"
expect 2 "--dpi and --long-side both size the pages: give one" "$B" ask --model "$M" --dpi 72 --long-side 100 "$I" "?"
expect 2 "--dpi and --long-side both size the pages: give one" "$B" ocr --model "$M" --long-side 100 --dpi 72 "$I"
printf '{"id":"both","files":["%s"],"question":"?","params":{"dpi":72,"long_side":100}}\n' "$I" > "$T/both.jsonl"
"$B" batch --model "$M" "$T/both.jsonl" --out "$T/both_res.jsonl" --no-progress > /dev/null 2>&1
check "a job's params with dpi and long_side: refused" grep -q "dpi and long_side both size the pages" "$T/both_res.jsonl"
expect 0 '"tokens_per_s":0,' "$B" ask --model "$M" --max-tokens 1 --json "$I" "?"
# the file "-" is stdin (a pipe, or a redirect): read as the file itself, named "-"
PDF="$(dirname "$I")/two_pages.pdf" V="$(dirname "$I")/clip_2s.mp4"
timeout 120 "$B" ocr --model "$M" --max-tokens 4 --no-progress "$PDF" 2> /dev/null < /dev/null | sed "s|: $PDF -->|: - -->|" > "$T/ocr_named.md"
cat "$PDF" | timeout 120 "$B" ocr --model "$M" --max-tokens 4 --no-progress - > "$T/ocr_pipe.md" 2> /dev/null
timeout 120 "$B" ocr --model "$M" --max-tokens 4 --no-progress - < "$PDF" > "$T/ocr_redir.md" 2> /dev/null
check "ocr - (a pipe) = ocr FILE, named '-'" sh -c "[ -s '$T/ocr_pipe.md' ] && grep -q '^<!-- page 2: - -->' '$T/ocr_pipe.md' && cmp -s '$T/ocr_pipe.md' '$T/ocr_named.md'"
check "ocr - (a redirect) = ocr FILE" cmp -s "$T/ocr_redir.md" "$T/ocr_named.md"
for f in "$I" "$V"; do
    timeout 120 "$B" ask --model "$M" --max-tokens 4 --no-think --json "$f" "What is it?" > "$T/ask_named.json" 2> /dev/null < /dev/null
    cat "$f" | timeout 120 "$B" ask --model "$M" --max-tokens 4 --no-think --json - "What is it?" > "$T/ask_pipe.json" 2> /dev/null
    a=$(json_value "$T/ask_named.json" 1 prompt_tokens) b=$(json_value "$T/ask_pipe.json" 1 prompt_tokens)
    check "ask - = ask FILE ($(basename "$f")): prompt tokens ($a, $b)" [ -n "$a" -a "$a" = "$b" ]
    c=$(json_value "$T/ask_named.json" 1 answer) d=$(json_value "$T/ask_pipe.json" 1 answer)
    check "ask - = ask FILE ($(basename "$f")): answer ($c)" [ -n "$c" -a "$c" != '""' -a "$c" = "$d" ]
done
head -c 200 "$PDF" > "$T/cut.pdf"
expect 1 "^nanovl ask: -: " sh -c "cat '$T/cut.pdf' | '$B' ask --model '$M' --max-tokens 2 - 'What?'"
expect 1 "'-': stdin is empty" "$B" ask --model "$M" --max-tokens 2 - "What?"
# an endless stream is not copied past the media's file limit (1 GiB) before being refused (it
# filled $TMPDIR: 2.8 GB in 6 s, and growing)
expect 1 "'-': stdin holds more than the limit of 1073741824 bytes for one file; stopped reading it" sh -c "cat /dev/zero | '$B' ask --model '$M' --max-tokens 2 - 'What?'"
# a file piped in with the question forgotten: refused, not asked as a question
expect 2 "the question on stdin is not text (it holds a NUL byte); to ask about a file on stdin" sh -c "cat '$I' | '$B' ask --model '$M' -"
expect 2 "stdin holds the question ('-'), so it cannot also hold the file '-'" sh -c "cat '$I' | '$B' ask --model '$M' - -"
# a damaged PDF through stdin under ocr: named '-', not by its private copy
expect 1 "^nanovl ocr: -: damaged PDF" sh -c "cat '$T/cut.pdf' | '$B' ocr --model '$M' --max-tokens 2 -"
# a redirect read part way: the file from where stdin stands, as a pipe would give it
{ printf 'JUNK'; cat "$I"; } > "$T/junk_then_image"
{ head -c 4 > /dev/null; timeout 120 "$B" ask --model "$M" --max-tokens 4 --no-think --json - "What is it?" > "$T/ask_at.json" 2> /dev/null; } < "$T/junk_then_image"
timeout 120 "$B" ask --model "$M" --max-tokens 4 --no-think --json "$I" "What is it?" > "$T/ask_named.json" 2> /dev/null < /dev/null
check "a redirect read part way: the image after the junk" [ -n "$(json_value "$T/ask_at.json" 1 answer)" -a "$(json_value "$T/ask_at.json" 1 answer)" = "$(json_value "$T/ask_named.json" 1 answer)" ]
expect 2 "stdin holds the questions with --chat, so it cannot also hold the file '-'" "$B" ask --model "$M" --chat -
expect 2 "stdin holds the question ('-'), so it cannot also hold the file '-'" "$B" ask --model "$M" -q - -
expect 2 "'-' (stdin) cannot be given a file of its own in --out-dir" "$B" ocr --model "$M" - --out-dir "$T/od"
expect 2 "'-' (stdin) cannot be read again by a resumed run" "$B" ocr --model "$M" - -o "$T/o.md" --resume
# the file '-' is copied once at most: a pipe to the CLI's unlinked copy (nanovl-stdin-*), a redirect
# not at all; the engine (ask) and the page planner (ocr) open it through /proc/self/fd instead of
# writing a PDF or video to a temporary file of their own (nanovl-XXXXXX, which held the copy
# again). Opening is held 2 s (the renderer's test knob) while the folder is watched.
mkdir "$T/tmpd"
for how in "ask pipe" "ask redirect" "ocr pipe" "ocr redirect"; do
    set -- $how
    if [ "$1" = ask ]; then set -- "$@" --no-think - "What?"; else set -- "$@" -; fi
    c=$1 w=$2
    shift 2
    if [ "$w" = pipe ]; then
        (cat "$PDF" | TMPDIR="$T/tmpd" NVL_TEST_RENDERER_SLOW_OPEN="/:2000" timeout 120 "$B" "$c" --model "$M" --max-tokens 2 --no-progress "$@" > "$T/once.out" 2>&1; echo "rc=$?" >> "$T/once.out") &
    else
        (TMPDIR="$T/tmpd" NVL_TEST_RENDERER_SLOW_OPEN="/:2000" timeout 120 "$B" "$c" --model "$M" --max-tokens 2 --no-progress "$@" < "$PDF" > "$T/once.out" 2>&1; echo "rc=$?" >> "$T/once.out") &
    fi
    p=$! seen=
    while kill -0 $p 2> /dev/null; do
        for f in "$T/tmpd"/*; do
            [ -e "$f" ] || continue
            case "$f" in */nanovl-stdin-*) [ "$w" = pipe ] && continue ;; esac
            case "$seen " in *" $f "*) ;; *) seen="$seen $f" ;; esac
        done
        sleep 0.05
    done
    wait $p
    check "$c of a PDF on stdin ($w): copied once at most (seen:$seen), answered ($(tail -n 1 "$T/once.out"))" [ -z "$seen" -a "$(tail -n 1 "$T/once.out")" = rc=0 ]
done
# a PDF sent as bytes (a job's base64 "data") is written to a temporary file that is unlinked at
# once (read through /proc/self/fd): a run killed (-9) while it is open leaves nothing in TMPDIR
# (the named copy stayed behind before). Opening is held (the renderer's test knob), the kill comes
# once the process holds the copy.
mkdir "$T/tmpd2"
b64=$(base64 -w0 "$PDF")
printf '{"id":"d","files":[{"type":"pdf","data":"%s","name":"sent.pdf"}],"question":"Hi","params":{"max_tokens":2}}\n' "$b64" > "$T/data.jsonl"
TMPDIR="$T/tmpd2" NVL_TEST_RENDERER_SLOW_OPEN="/:5000" "$B" batch --model "$M" "$T/data.jsonl" --out "$T/data.res" --no-progress > /dev/null 2>&1 &
p=$! i=0 held=
while [ $i -lt 200 ] && [ -z "$held" ]; do
    held=$(ls "$T/tmpd2" 2> /dev/null; for f in /proc/$p/fd/*; do readlink "$f" 2> /dev/null; done | grep "tmpd2/nanovl-")
    sleep 0.05
    i=$((i + 1))
done
kill -9 $p 2> /dev/null
wait $p 2> /dev/null
check "bytes' temporary file held ($held), then nothing left after kill -9 ($(ls "$T/tmpd2"))" sh -c '[ -n "$1" ] && [ -z "$(ls -A "$2")" ]' - "$held" "$T/tmpd2"
# a media path given a name of its own (batch and serve: {"path", "name"}): errors name it, the
# path replaced where it stands as a word only (a path "a" once turned "damaged" into "ddoc.pdfm...")
head -c 3000 "$PDF" > "$T/a"
printf '%s\n' '{"id":"x","files":[{"path":"a","name":"doc.pdf"}],"question":"Hi","params":{"max_tokens":2}}' \
    '{"id":"z","type":"ocr","files":[{"path":"a","name":"doc.pdf"}],"params":{"max_tokens":2}}' > "$T/named.jsonl"
(cd "$T" && timeout 120 "$B" batch --model "$M" named.jsonl --out named.res --no-progress > /dev/null 2>&1)
check "a path with a name of its own: its errors say 'doc.pdf: damaged PDF: PDF document is damaged' ($(grep -o '"message":"[^"]*"' "$T/named.res" | head -n 1))" \
    sh -c '[ "$(grep -c "\"message\":\"doc.pdf: damaged PDF: PDF document is damaged\"" "$1")" = 2 ]' - "$T/named.res"
mkdir "$T/named-dir" "$T/named-dir/a"
printf '%s\n' '{"id":"x","files":[{"path":"a","name":"doc.pdf"}],"question":"Hi","params":{"max_tokens":2}}' > "$T/named-dir/j.jsonl"
(cd "$T/named-dir" && timeout 120 "$B" batch --model "$M" j.jsonl --out r.jsonl --no-progress > /dev/null 2>&1)
check "a path 'a' that is a folder: \"'doc.pdf' is a directory\", the word 'a' kept ($(grep -o '"message":"[^"]*"' "$T/named-dir/r.jsonl"))" \
    grep -q "\"message\":\"'doc.pdf' is a directory; media must be regular files\"" "$T/named-dir/r.jsonl"
# serve --socket at a path that is not a socket: refused and left alone; a symbolic link is said to be one
ln -s "$T/no-such-socket" "$T/sock-link" && : > "$T/sock-file"
expect 1 "sock-link: is a symbolic link; not replacing it" "$B" serve --model "$M" --socket "$T/sock-link"
expect 1 "sock-file: exists and is not a socket; not replacing it" "$B" serve --model "$M" --socket "$T/sock-file"
check "the link and the file are left as they were" sh -c '[ -L "$1" ] && [ -f "$2" ] && [ ! -s "$2" ]' - "$T/sock-link" "$T/sock-file"
# an empty output name is a usage error, for -o as for --out-dir
expect 2 "nanovl ocr: -o needs a file's name" "$B" ocr --model "$M" "$I" -o ""
expect 2 "nanovl ocr: --out-dir needs a folder's name" "$B" ocr --model "$M" "$I" --out-dir ""
# generate, render, embed and inspect edges (a review, 2026-12-02): an empty prompt is refused; render
# --pages on a video is refused; -o at a file is refused before any work; a failed render or embed
# leaves no folder it made; inspect reports a bad generation_config.json (what generate refuses,
# the id printed whole) and a non-string quant_algo by name
expect 2 "the prompt is empty (stdin was empty" sh -c "'$B' generate --model '$M' --max-tokens 2 < /dev/null"
expect 2 "the prompt is empty (--prompt \"\"" "$B" generate --model "$M" --max-tokens 2 --prompt ""
expect 2 "--pages selects PDF pages, and '$V' is a video" "$B" render "$V" -o "$T/rv" --pages 1
: > "$T/rfile"
expect 2 "-o '$T/rfile' is not a folder" "$B" render "$PDF" -o "$T/rfile"
expect 1 "3-5 is outside the document's pages 1-2" "$B" render "$PDF" -o "$T/rbad" --pages 3-5
echo "1 2" > "$T/not-media"
expect 1 "not a recognised image, PDF or video format" "$B" embed --model "$M" "$T/not-media" -o "$T/ebad"
check "failed render and embed leave no folder they made" sh -c '[ ! -e "$1/rv" ] && [ ! -e "$1/rbad" ] && [ ! -e "$1/ebad" ]' - "$T"
cp -r "$M" "$T/gencfg" && echo '{"eos_token_id": [99999999]}' > "$T/gencfg/generation_config.json"
expect 1 "generation_config.json: eos_token_id 99999999 is not a token id of the" "$B" inspect "$T/gencfg"
QD="$(dirname "$M")/quant_vl/fp8"
if [ -d "$QD" ]; then
    cp -r "$QD" "$T/qalgo" && sed -i 's/"quant_algo": *"FP8"/"quant_algo": 5/' "$T/qalgo/hf_quant_config.json"
    expect 1 "hf_quant_config.json: quantization.quant_algo is a number, expected a string" "$B" inspect "$T/qalgo"
fi
# a NUL byte in the model's text (the byte-level token 'Ā' decodes to 0x00; at this temperature
# seed 27 draws it between tokens 50 and 100, on every CPU kernel): the answer goes on after it,
# as "\u0000" in JSON (it was cut there) and as the byte itself in plain text
NUL_ASK="--max-tokens 100 --no-think --temperature 100 --seed 27"
timeout 120 "$B" ask --model "$M" $NUL_ASK --json "$I" "Hi" > "$T/nul.json" 2> /dev/null < /dev/null
a=$(json_value "$T/nul.json" 1 answer)
check "a NUL byte in the answer: \\u0000 with the text after it in --json ($a)" sh -c 'case "$1" in *"\u0000"?*\") exit 0 ;; esac; exit 1' - "$a"
timeout 120 "$B" ask --model "$M" $NUL_ASK "$I" "Hi" > "$T/nul.txt" 2> /dev/null < /dev/null
check "a NUL byte in the answer: the byte, and the text after it, in plain text" \
    sh -c '[ "$(tr -cd "\000" < "$1" | wc -c)" -ge 1 ] && [ "$(tr "\n\000" "\001\n" < "$1" | tail -n +2 | wc -c)" -gt 1 ]' - "$T/nul.txt"
expect_report
