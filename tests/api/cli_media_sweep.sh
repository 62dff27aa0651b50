#!/bin/sh
# nanovl ask on every file of ../shared/media/MANIFEST.tsv with the tiny VL checkpoint: files the
# manifest says decode must be answered (exit 0); files it says must be rejected, and encrypted
# ones, must fail with exit 1 and an error that names the file; no file may crash or hang the CLI
# (exit > 1, or a signal). Files that are not decoder inputs are skipped.
#   cli_media_sweep.sh NANOVL MODEL_DIR SHARED_MEDIA_DIR
nanovl="$1" model="$2" media="$3"
[ -f "$media/MANIFEST.tsv" ] || { echo "skipped: $media/MANIFEST.tsv is absent"; exit 77; }
fail=0 n=0
err=$(mktemp)
tail -n +2 "$media/MANIFEST.tsv" | while IFS="$(printf '\t')" read -r file bytes sha kind what expected rest; do
  case "$expected" in "not a decoder input"*) continue ;; esac
  n=$((n + 1))
  timeout 120 "$nanovl" ask --model "$model" "$media/$file" "What is this?" --max-tokens 1 --max-frames 2 \
    --long-side 256 --pages 1 --no-think > /dev/null 2> "$err"
  rc=$?
  base=$(basename "$file")
  case "$expected" in
    decodes*) want=0 ;;
    "must be rejected"* | encrypted*) want=1 ;;
    *) want=any ;;
  esac
  if [ $rc -gt 1 ]; then
    echo "FAIL $file: exit $rc (crash, hang or usage error): $(head -c 300 "$err")"; fail=1
  elif [ "$want" != any ] && [ $rc -ne "$want" ]; then
    echo "FAIL $file: exit $rc, expected $want ($expected): $(head -c 300 "$err")"; fail=1
  elif [ $rc -eq 1 ] && ! grep -q "$base" "$err"; then
    echo "FAIL $file: the error does not name the file: $(head -c 300 "$err")"; fail=1
  fi
  [ $fail -eq 0 ] || echo "$fail" > "$err.failed"
done
rm -f "$err"
if [ -f "$err.failed" ]; then rm -f "$err.failed"; echo "media sweep: failures above"; exit 1; fi
echo "media sweep: every manifest file behaved as it should"
exit 0
