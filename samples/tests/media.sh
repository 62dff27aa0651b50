#!/bin/sh
# CI for samples/media: every sample decodes as described in samples/media/README.md, and all of
# them together stay well under 1 MB.
# usage: media.sh NANOVL SAMPLES_DIR
B=$1 m=$2/media fail=0
expect() {  # expect FILE ERE...: nanovl media-info FILE prints a line matching each ERE
  f=$1; shift
  out=$("$B" media-info "$m/$f" 2>&1) || { echo "FAIL $f: media-info exit $?"; echo "$out"; fail=1; return; }
  for re in "$@"; do
    if echo "$out" | grep -qE -- "$re"; then echo "ok   $f: $re"; else echo "FAIL $f: no '$re'"; echo "$out"; fail=1; fi
  done
}
expect invoice.pdf '^format: pdf$' '^pages: 2$' '^page 1: 612.00 x 792.00 pt, label 1, text layer yes$' '^page 2: .*text layer yes$'
expect scan.jpg '^format: jpeg$' '^image: 765x990$'
expect chart.png '^format: png$' '^image: 640x420$'
expect clip.mp4 '^format: video$' '^video: 320x240, 30 frames, 10.000 fps, 3.000 s$'
total=$(cat "$m/invoice.pdf" "$m/scan.jpg" "$m/chart.png" "$m/clip.mp4" | wc -c)
if [ "$total" -lt 524288 ]; then echo "ok   $total bytes in all"; else echo "FAIL $total bytes (keep them under 512 KiB)"; fail=1; fi
exit $fail
