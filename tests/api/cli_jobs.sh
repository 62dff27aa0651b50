#!/bin/sh
# `nanovl jobs`: a batch jobs file from files. Its lines run through `nanovl batch` as the same
# question asked with `nanovl ask` (answer and prompt tokens) and the same pages read with
# `nanovl ocr --json`; a name with quotes, a newline and non-ASCII is a valid id; missing,
# non-regular and repeated files, a bad --pages (page 0 said so, with no made-up page count), no
# or both of -q / --ocr, -q twice, an empty or blank question and one not in UTF-8 are refused with
# nothing written.
# usage: cli_jobs.sh NANOVL MODEL_DIR MEDIA_DIR (tests/data/media/made)
B=$1 M=$2 MD=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
I="$MD/image.bmp" P="$MD/two_pages.pdf" Q='What is "shown" here?'
odd="$T/$(printf 'a "b"\nc-\303\251.bmp')"
cp "$I" "$odd"

# 1. questions: each job's result = ask's
"$B" jobs -q "$Q" "$I" "$odd" > "$T/jobs.jsonl" 2> "$T/err"
check "jobs: exit 0, two lines ($(cat "$T/err"))" [ $? = 0 -a "$(wc -l < "$T/jobs.jsonl")" = 2 ]
check "the id is the name as given, the file its absolute path" grep -q "^{\"id\":\"$I\",\"question\":\"What is \\\\\"shown\\\\\" here?\",\"files\":\\[\"$I\"\\]}\$" "$T/jobs.jsonl"
timeout 120 "$B" batch --model "$M" --max-tokens 6 --no-think --no-progress "$T/jobs.jsonl" --out "$T/res.jsonl" > /dev/null 2> "$T/berr" < /dev/null
check "batch over them: exit 0 ($(tail -1 "$T/berr"))" [ $? = 0 ]
timeout 120 "$B" ask --model "$M" --max-tokens 6 --no-think --json "$I" "$Q" > "$T/ask.jsonl" 2> /dev/null < /dev/null
check "the job's answer = ask's" [ -n "$(json_value "$T/ask.jsonl" 1 answer)" -a "$(json_value "$T/res.jsonl" 1 answer)" = "$(json_value "$T/ask.jsonl" 1 answer)" ]
check "the job's prompt tokens = ask's" [ "$(json_value "$T/res.jsonl" 1 prompt_tokens)" = "$(json_value "$T/ask.jsonl" 1 prompt_tokens)" ]
check "the odd name: its job ran, under its id" sh -c "sed -n 2p '$T/res.jsonl' | grep -q '\"status\":\"ok\"' && sed -n 2p '$T/res.jsonl' | grep -qF '\"id\":\"$T/a \\\"b\\\"\\nc-'"

# 2. OCR with --pages
"$B" jobs --ocr --pages 2 "$P" > "$T/ocr.jsonl"
check "ocr job line" grep -q "^{\"id\":\"$P\",\"type\":\"ocr\",\"files\":\\[\"$P\"\\],\"params\":{\"pages\":\"2\"}}\$" "$T/ocr.jsonl"
timeout 120 "$B" batch --model "$M" --max-tokens 6 --no-progress "$T/ocr.jsonl" --out "$T/ores.jsonl" > /dev/null 2>&1 < /dev/null
timeout 120 "$B" ocr --model "$M" --max-tokens 6 --no-progress --json --pages 2 "$P" > "$T/ocr_alone.jsonl" 2> /dev/null < /dev/null
check "the OCR job's page 2 text = ocr's" [ -n "$(json_value "$T/ocr_alone.jsonl" 1 text)" -a "$(json_value "$T/ores.jsonl" 1 text)" = "$(json_value "$T/ocr_alone.jsonl" 1 text)" ]

# 3. refusals: nothing written
expect 1 "cannot open '$T/none.png'" "$B" jobs -q "$Q" "$I" "$T/none.png"
"$B" jobs -q "$Q" "$I" "$T/none.png" > "$T/partial" 2> /dev/null
check "a missing file: no line written" [ ! -s "$T/partial" ]
expect 1 "'$T' is a directory" "$B" jobs -q "$Q" "$T"
expect 2 "is given twice" "$B" jobs -q "$Q" "$I" "$I"
# ... under two names (its job ran twice; a review)
ln -s "$I" "$T/other-name.png"
expect 2 "'$I' and '$T/other-name.png' are the same file (.*): it is given twice" "$B" jobs -q "$Q" "$I" "$T/other-name.png"
# (a review) an empty file (batch would fail its job), and the jobs file itself as stdout
# (`nanovl jobs --ocr * > jobs.jsonl` listed it); a usage error wins whatever the order
: > "$T/empty.png"
expect 1 "empty.png: the file is empty" "$B" jobs -q "$Q" "$T/empty.png"
expect 2 "is the jobs file being written (stdout)" sh -c '"$1" jobs --ocr "$2" "$3/self.jsonl" > "$3/self.jsonl"' sh "$B" "$I" "$T"
expect 2 "is given twice" "$B" jobs -q "$Q" "$I" "$I" "$T/none.png"
expect 2 "is given twice" "$B" jobs -q "$Q" "$T/none.png" "$I" "$I"
cp "$I" "$T/$(printf 'bad\377name.bmp')"
expect 1 "the path is not valid UTF-8" "$B" jobs -q "$Q" "$T/$(printf 'bad\377name.bmp')"
expect 2 "give -q QUESTION or --ocr" "$B" jobs "$I"
expect 2 "--ocr jobs ask no question" "$B" jobs --ocr -q "$Q" "$I"
expect 2 "--pages '3-x'" "$B" jobs --ocr --pages 3-x "$P"
expect 2 "--pages '0': page range '0': pages are numbered from 1 (0 is none)" "$B" jobs --ocr --pages 0 "$P"
expect 2 "--pages '99999999999': page numbers go up to 1000000 (99999999999 is past it)" "$B" jobs --ocr --pages 99999999999 "$P"
expect 2 "--pages '2,1000001': page numbers go up to 1000000 (1000001 is past it)" "$B" jobs --ocr --pages 2,1000001 "$P"
expect 2 "-q is given twice: a jobs file asks one question of each file" "$B" jobs -q "$Q" -q "Why?" "$I"
expect 2 "the question is empty" "$B" jobs -q "" "$I"
expect 2 "the question is empty" "$B" jobs -q " 	" "$I"
expect 2 "the question is not valid UTF-8" "$B" jobs -q "$(printf 'caf\351?')" "$I"
expect 0 "^usage: nanovl jobs" "$B" jobs --help
expect_report
