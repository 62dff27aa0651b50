#!/bin/sh
# The socket API from a shell: one request, its events printed as they arrive (one JSON per line).
#
#   samples/clients/ask.sh /run/nanovl.sock report.pdf "What is the total?" ['{"max_tokens":256}']
#
# The whole client is the one line at the end; with a fixed request it reads:
#
#   echo '{"id":"q1","files":["/data/report.pdf"],"question":"What is the total?"}' \
#     | socat -t 600 - UNIX-CONNECT:/run/nanovl.sock
#
# The file goes as an absolute path (the server resolves a relative one against its own working
# directory). socat shuts down its writing side when the request is sent; the server still answers
# and closes the connection after the request's done or error event. -t 600: how long socat keeps
# reading after that (its default, 0.5 s, would leave before a real answer); Ctrl-C closes the
# connection, which cancels the request on the server. Exit 1 when the last event is an error.
# Needs socat (Debian: apt-get install socat; scripts/setup.sh installs it).
[ $# -ge 3 ] || { sed -n '2,4p' "$0" >&2; exit 2; }
sock=$1 file=$2 question=$3 params=${4:-"{}"}
path=$(realpath -- "$file") || exit 1
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  '; }   # a JSON string's body

printf '{"v":1,"id":"sh-%s","files":["%s"],"question":"%s","params":%s}\n' "$$" "$(esc "$path")" "$(esc "$question")" "$params" \
  | socat -t 600 - "UNIX-CONNECT:$sock" | awk '{ print; fflush() } { last = $0 } END { exit last ~ /"event":"done"/ ? 0 : 1 }'
