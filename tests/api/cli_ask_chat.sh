#!/bin/sh
# `nanovl ask --chat`: a conversation about files, a question per line of stdin.
# - Each turn's answer equals the same conversation asked at once (a batch job whose "messages"
#   are the files with the first question, the earlier answers as "assistant" turns, then the
#   question): prompt tokens and answer; the files' prefill is reused from turn 2 on (cached
#   tokens > 0); turn 1 equals a plain `ask`.
# - /reset starts again (the turn after it equals turn 1); blank lines are skipped; /help says
#   the commands; /exit ends (no question after it is answered); a transcript (Q: / A:) in a pipe.
#   Commands in any case; "/foo" and "/exit please" are said, not asked; "/etc/hosts ..." is asked.
# - A file that cannot be decoded ends the conversation at its first turn (exit 1).
# - A failed turn (past the context budget), a line over 1 MiB and one holding a NUL are left out
#   of the conversation (the next answer equals the conversation without them), exit 1; commands
#   and questions lose trailing blanks; no /reset hint on a first turn.
# - SIGINT during an answer stops it and the conversation goes on; SIGINT at the prompt ends it
#   (130, also right after a stopped answer); a second SIGINT while a step nothing interrupts holds the first exits at once (130).
# - Usage errors (exit 2): --per-page, -q -, an argument that is not a file.
# - On a terminal (util-linux `script`, when present): the "> " prompt and the banner on stderr.
# usage: cli_ask_chat.sh NANOVL MODEL_DIR IMAGE
B=$1 M=$2 I=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
A="--model $M --max-tokens 12 --no-think --no-progress"

# 1. two turns and a reset, in JSON
printf '\nWhat is in the picture?\n\n   \nWhat colour is it?  \t\n/reset \t\nWhat is in the picture?\n' > "$T/q1"  # (an empty first line crashed)
timeout 120 "$B" ask $A --json --chat "$I" < "$T/q1" > "$T/chat.jsonl" 2> "$T/chat.err"
rc=$?
check "chat exits 0 (got $rc: $(head -3 "$T/chat.err"))" [ "$rc" = 0 ]
check "three answers (blank lines skipped)" [ "$(wc -l < "$T/chat.jsonl")" = 3 ]
check "turn numbers 1 2 3" [ "$(json_value "$T/chat.jsonl" 1 turn)$(json_value "$T/chat.jsonl" 2 turn)$(json_value "$T/chat.jsonl" 3 turn)" = 123 ]
timeout 120 "$B" ask $A --json "$I" "What is in the picture?" > "$T/one.jsonl" 2>&1 < /dev/null
check "turn 1 = a plain ask" [ -n "$(json_value "$T/one.jsonl" 1 answer)" -a "$(json_value "$T/chat.jsonl" 1 answer)" = "$(json_value "$T/one.jsonl" 1 answer)" ]
check "turn 1 prompt tokens = a plain ask's" [ "$(json_value "$T/chat.jsonl" 1 prompt_tokens)" = "$(json_value "$T/one.jsonl" 1 prompt_tokens)" ]
a1=$(json_value "$T/chat.jsonl" 1 answer)
printf '{"id":"t2","messages":[{"role":"user","content":[{"type":"image","path":"%s"},{"type":"text","text":"What is in the picture?"}]},{"role":"assistant","content":%s},{"role":"user","content":"What colour is it?"}],"params":{"max_tokens":12,"think":false}}\n' "$I" "$a1" > "$T/jobs.jsonl"
timeout 120 "$B" batch --model "$M" --no-progress "$T/jobs.jsonl" --out "$T/res.jsonl" > /dev/null 2>&1 < /dev/null
check "turn 2 = the conversation asked at once (answer)" [ -n "$(json_value "$T/res.jsonl" 1 answer)" -a "$(json_value "$T/chat.jsonl" 2 answer)" = "$(json_value "$T/res.jsonl" 1 answer)" ]
check "turn 2 = the conversation asked at once (prompt tokens)" [ "$(json_value "$T/chat.jsonl" 2 prompt_tokens)" = "$(json_value "$T/res.jsonl" 1 prompt_tokens)" ]
check "turn 2 prompt longer than turn 1's" [ "$(json_value "$T/chat.jsonl" 2 prompt_tokens)" -gt "$(json_value "$T/chat.jsonl" 1 prompt_tokens)" ]
check "turn 2 reuses the files' prefill" [ "$(json_value "$T/chat.jsonl" 2 cached_prompt_tokens)" -gt 0 ]
check "after /reset the turn equals turn 1" [ "$(json_value "$T/chat.jsonl" 3 answer)" = "$a1" -a "$(json_value "$T/chat.jsonl" 3 prompt_tokens)" = "$(json_value "$T/chat.jsonl" 1 prompt_tokens)" ]

# 2. the transcript in a pipe; /help; /exit ends
printf 'What is in the picture?\n/help\nWhat colour is it?\n  /exit  \nNever asked?\n' > "$T/q2"
timeout 120 "$B" ask $A --chat "$I" < "$T/q2" > "$T/chat.txt" 2> "$T/chat2.err"
rc=$?
check "transcript exits 0 (got $rc)" [ "$rc" = 0 ]
check "transcript: Q and A lines" [ "$(grep -c '^Q: ' "$T/chat.txt")" = 2 -a "$(grep -c '^A: ' "$T/chat.txt")" = 2 ]
check "/exit: nothing after it asked" sh -c "! grep -q 'Never asked' '$T/chat.txt'"
check "/help says the commands" grep -q "/reset starts the conversation again" "$T/chat2.err"
# commands in any case; a mistyped one is said, not asked; a path is a question; a command with
# more after it is said
printf 'What is in the picture?\n/foo bar\n/exit please\n/RESET\n/etc/hosts holds what?\n/Quit\nNever asked?\n' > "$T/q6"
timeout 120 "$B" ask $A --chat "$I" < "$T/q6" > "$T/chat6.txt" 2> "$T/chat6.err"
rc=$?
check "commands: exit 0 (got $rc)" [ "$rc" = 0 ]
check "/foo is said not to be a command" grep -q "^nanovl ask: /foo is not a command (/help lists them" "$T/chat6.err"
check "/exit please: said, not asked, not the end" sh -c "grep -q '^nanovl ask: /exit takes nothing after it' '$T/chat6.err' && grep -q '^Q: /etc/hosts holds what?' '$T/chat6.txt'"
check "only the two questions asked (/RESET, /Quit are commands)" [ "$(grep -c '^Q: ' "$T/chat6.txt")" = 2 ]
# a file that cannot be decoded: the conversation ends at its first turn (each would fail), exit 1
head -c 100 "$I" > "$T/bad.bmp"
printf 'What is it?\nAnd now?\n' > "$T/q7"
timeout 120 "$B" ask $A --chat "$T/bad.bmp" < "$T/q7" > "$T/chat7.txt" 2> "$T/chat7.err"
rc=$?
check "an unreadable file: exit 1 (got $rc)" [ "$rc" = 1 ]
check "an unreadable file: the conversation ends, said" grep -q "the conversation ends: its files cannot be read" "$T/chat7.err"
check "an unreadable file: one question tried" [ "$(grep -c '^Q: ' "$T/chat7.txt")" = 1 ]

# 3. a turn past the context budget, and a line over 1 MiB, are left out of the conversation
long=$(awk 'BEGIN { for (i = 0; i < 600; i++) printf "word%d ", i }')
{ echo "What is in the picture?"; echo "$long"; head -c 1048577 /dev/zero | tr '\0' 'x'; echo; printf 'a NUL\0byte\n'; echo "What colour is it?"; } > "$T/q3"
timeout 120 "$B" ask $A --json --max-context 400 --chat "$I" < "$T/q3" > "$T/chat3.jsonl" 2> "$T/chat3.err"
rc=$?
check "a failed turn: exit 1 (got $rc)" [ "$rc" = 1 ]
check "the failed turn names the budget and /reset" grep -q "context budget" "$T/chat3.err"
check "the failed turn's /reset hint" grep -q "/reset starts the conversation again" "$T/chat3.err"
check "the long line is left out, said so" grep -q "a question of more than 1048576 bytes was left out" "$T/chat3.err"
check "the NUL line is left out, said so" grep -q "a line holding a NUL byte was left out" "$T/chat3.err"
# a line of exactly 1 MiB is a question (past the budget here: failed, not left out); no /reset
# hint on a first turn (there is nothing to reset)
{ head -c 1048576 /dev/zero | tr '\0' 'x'; echo; } > "$T/q5"
timeout 120 "$B" ask $A --max-context 400 --chat "$I" < "$T/q5" > /dev/null 2> "$T/chat5.err"
check "1 MiB exactly: asked (the budget's error)" grep -q "context budget" "$T/chat5.err"
check "1 MiB exactly: not left out" sh -c "! grep -q 'left out' '$T/chat5.err'"
check "no /reset hint on a first turn" sh -c "! grep -q '/reset starts' '$T/chat5.err'"
check "the failed turn's JSON error" [ "$(json_value "$T/chat3.jsonl" 2 code)" = '"limit_exceeded"' ]
l3="$(json_value "$T/chat3.jsonl" 3 turn) $(json_value "$T/chat3.jsonl" 3 code)" l4="$(json_value "$T/chat3.jsonl" 4 turn) $(json_value "$T/chat3.jsonl" 4 code)"
check "the long line's JSON record: its turn, limit_exceeded, left out ($l3)" sh -c '[ "$2" = "3 \"limit_exceeded\"" ] && sed -n 3p "$1" | grep -q "\"question\":\"xxxx.*bytes was left out"' - "$T/chat3.jsonl" "$l3"
check "the NUL line's JSON record: its turn, invalid_argument, the line up to the NUL ($l4)" sh -c '[ "$2" = "4 \"invalid_argument\"" ] && sed -n 4p "$1" | grep -q "\"question\":\"a NUL\""' - "$T/chat3.jsonl" "$l4"
check "the last turn as if the failed ones had not been" [ "$(json_value "$T/chat3.jsonl" 5 answer)" = "$(json_value "$T/res.jsonl" 1 answer)" ]

# 4. usage errors
expect 2 "cannot be used together" "$B" ask $A --chat --per-page "$I"
expect 2 "questions come from stdin" "$B" ask $A --chat -q - "$I"
expect 2 "no-such.png': No such file.*every argument is a file" "$B" ask $A --chat "$I" "$T/no-such.png"
expect 2 "is a directory; media must be regular files" "$B" ask $A --chat "$I" "$T"
printf 'What colour is it?\n' > "$T/q4"
timeout 120 "$B" ask $A --json --chat -q "What is in the picture?" "$I" < "$T/q4" > "$T/chat4.jsonl" 2>&1
check "-q gives the opening question" [ "$(json_value "$T/chat4.jsonl" 2 answer)" = "$(json_value "$T/res.jsonl" 1 answer)" ]

# 5. signals. SIGINT while the first answer's file is read (held 1.5 s by the test knob, which
# nothing interrupts): that answer stops, the next question is answered
mkfifo "$T/in" || exit 1
NVL_TEST_MEDIA_DELAY="$(basename "$I"):1500" "$B" ask $A --json --chat "$I" < "$T/in" > "$T/sig.jsonl" 2> "$T/sig.err" &
pid=$!
exec 3> "$T/in"
echo "What is in the picture?" >&3
sleep 0.5
kill -INT $pid
echo "What is in the picture?" >&3
i=0
while [ "$(wc -l < "$T/sig.jsonl")" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.2
kill -INT $pid  # at the prompt, after a stopped answer: the conversation ends (130)
wait_gone $pid
exec 3>&-
wait $pid
rc=$?
check "SIGINT stops an answer, then ends at the prompt: exit 130 (got $rc)" [ "$rc" = 130 ]
check "SIGINT: the answer was stopped" grep -q "the answer was stopped" "$T/sig.err"
check "SIGINT at the prompt after a stopped answer: not taken for a second signal" sh -c "! grep -q 'interrupted again' '$T/sig.err'"
check "SIGINT: the next question answered as turn 1" [ "$(json_value "$T/sig.jsonl" 2 answer)" = "$a1" ]
# SIGINT at the prompt right after a stopped answer ends the conversation (130), as any SIGINT at
# the prompt: it is not taken for a second signal during that answer
NVL_TEST_MEDIA_DELAY="$(basename "$I"):1500" "$B" ask $A --chat "$I" < "$T/in" > /dev/null 2> "$T/sig4.err" &
pid=$!
exec 3> "$T/in"
echo "What is in the picture?" >&3
sleep 0.5
kill -INT $pid
i=0
while ! grep -q "the answer was stopped" "$T/sig4.err" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.2
kill -INT $pid
wait_gone $pid
exec 3>&-
wait $pid
rc=$?
check "SIGINT at the prompt after a stopped answer: exit 130 (got $rc)" [ "$rc" = 130 ]
check "SIGINT at the prompt after a stopped answer: no second-signal exit" sh -c "! grep -q 'interrupted again' '$T/sig4.err'"
# SIGINT at the prompt ends the conversation
NVL_TEST_MEDIA_DELAY= "$B" ask $A --chat "$I" < "$T/in" > /dev/null 2> "$T/sig2.err" &
pid=$!
exec 3> "$T/in"
sleep 1
kill -INT $pid
wait_gone $pid
exec 3>&-
wait $pid
rc=$?
check "SIGINT at the prompt: exit 130 (got $rc)" [ "$rc" = 130 ]
# a second SIGINT while the first waits for a step nothing interrupts (a 4 s read): exit at once
NVL_TEST_MEDIA_DELAY="$(basename "$I"):4000" "$B" ask $A --chat "$I" < "$T/in" > /dev/null 2> "$T/sig3.err" &
pid=$!
exec 3> "$T/in"
echo "What is in the picture?" >&3
sleep 1
kill -INT $pid
sleep 0.3
kill -INT $pid
wait_gone $pid
exec 3>&-
wait $pid
rc=$?
check "a second SIGINT exits at once: 130 within 1 s (got $rc after $i ticks)" [ "$rc" = 130 -a $i -lt 10 ]

# 6. on a terminal: the banner and the prompt on stderr
if command -v script > /dev/null 2>&1; then
    printf 'What is in the picture?\n/exit\n' > "$T/q6"
    timeout 120 script -qec "'$B' ask $A --chat -q 'An opening question?' '$I' 2> '$T/tty.err'" /dev/null < "$T/q6" > "$T/tty.out" 2>&1
    check "terminal: banner" grep -q "a conversation about 1 file" "$T/tty.err"
    check "terminal: the opening question shown as typed" grep -q "^> An opening question?" "$T/tty.err"
    check "terminal: prompt" grep -q "> " "$T/tty.err"
else
    echo "note: no util-linux script; the terminal checks are skipped"
fi
expect_report
