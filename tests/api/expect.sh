# Shared by the CLI test scripts (sourced: . "$(dirname "$0")/expect.sh" after T is made):
#   expect RC PATTERN CMD...        CMD exits RC and its stdout+stderr match the regex PATTERN
#   expect_fixed RC STRING CMD...   the same with a fixed string
#   check DESCRIPTION CMD...        CMD (a test: [ ... ], cmp -s, grep -q ...) succeeds
#   wait_gone PID [TICKS]           waits up to TICKS x 0.1 s (default 50) for PID to end; $i ticks
#   json_value FILE LINE KEY        the raw JSON value of "KEY" on line LINE of FILE (a string with
#                                   its quotes and escapes, or a number), its first occurrence
#   expect_report                   prints the count, returns 0 when nothing failed
# CMD runs with stdin closed and under EXPECT_TIMEOUT seconds (default 60; exit 124 = a hang).
# Scripts count their own extra checks with n=$((n + 1)) and fail=$((fail + 1)).
fail=0 n=0
expect_run() { # MODE RC PATTERN CMD...
    mode=$1 rc_want=$2 pat=$3
    shift 3
    n=$((n + 1))
    timeout "${EXPECT_TIMEOUT:-60}" "$@" >"$T/out" 2>&1 </dev/null
    rc=$?
    if [ "$rc" != "$rc_want" ] || ! grep -q "$mode" -e "$pat" "$T/out"; then
        echo "FAIL: $* -> exit $rc (want $rc_want), output:"; sed 's/^/    /' "$T/out" | head -5
        echo "    (wanted '$pat')"
        fail=$((fail + 1))
    fi
}
expect() { expect_run -G "$@"; }
check() {
    d=$1
    shift
    n=$((n + 1))
    "$@" || { echo "FAIL: $d"; fail=$((fail + 1)); }
}
json_value() {
    sed -n "${2}p" "$1" | sed -n 's/.*"'"$3"'":\("\([^"\\]\|\\.\)*"\|[-0-9.e]*\).*/\1/p'
}
wait_gone() {
    i=0
    while kill -0 "$1" 2> /dev/null && [ $i -lt "${2:-50}" ]; do sleep 0.1; i=$((i + 1)); done
}
expect_fixed() { expect_run -F "$@"; }
expect_report() {
    echo "$((n - fail)) of $n checks passed"
    [ "$fail" = 0 ]
}
