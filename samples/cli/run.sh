#!/bin/sh
# The nanovl CLI on the sample media: one question, several questions about one document (its
# vision and prefill run once), a conversation, page by page, OCR, a chart, a video. Each
# command is printed first.
#
#   samples/cli/run.sh MODEL_DIR [nanovl options...]
#   samples/cli/run.sh ~/models/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16
#   samples/cli/run.sh tests/data/vl_tiny --max-tokens 4 --no-think     # the tiny test checkpoint
#
# NANOVL picks the binary (default: build/api/nanovl, else nanovl on PATH). Exit 1 if a command fails.
set -u
[ $# -ge 1 ] || { sed -n '2,10p' "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
NANOVL=${NANOVL:-$root/build/api/nanovl}
[ -x "$NANOVL" ] || NANOVL=nanovl
export NANOVL_MODEL="$1"   # the default --model of every command below
shift
m=$root/samples/media
rc=0
show() { echo "\$ nanovl $*" | sed "s#$root/##g"; "$NANOVL" "$@" || rc=1; echo; }

# a born-digital PDF: one question, the answer streamed
show ask "$m/invoice.pdf" "What is the total due on this invoice?" "$@"
# several questions about one document, with usage and timings as JSON (one object per answer):
# the second and third reuse the document's prefill (usage.cached_prompt_tokens)
show ask "$m/invoice.pdf" -q "What is the invoice number?" -q "Who signed it, and in what role?" \
  -q "When is payment due?" --json "$@"
# a conversation about the document: a question per line of stdin, each answered seeing the
# earlier questions and answers (run it on a terminal and type them; /exit or ^D ends)
printf 'What is the total due?\nAnd how much of it is tax?\n' |
  show ask --chat "$m/invoice.pdf" "$@"
# page by page (long documents): one answer per page, a marker before each
show ask --per-page "$m/invoice.pdf" "What is on this page?" "$@"
# a scanned page to Markdown
show ocr "$m/scan.jpg" "$@"
# a chart
show ask "$m/chart.png" "Which quarter had the highest revenue, and how much was it?" "$@"
# a video, sampled at 4 frames per second, with EVS token pruning at rate 0.5
show ask "$m/clip.mp4" "What changes at the cut, and when does it happen?" --fps 4 --evs 0.5 "$@"
exit $rc
