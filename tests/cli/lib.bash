# Helpers for the golden CLI tests (sourced, not a test itself: tests/run.sh runs *.sh).
#
# Provides: $T (a temporary directory removed on exit), on_exit, fail, check, run_vma (captures
# $out, $err, $rc), expect_ok, expect_fail (exit 1, exactly one stderr line containing a
# gist), expect_usage (exit 2), and is_sparse.
set -u

: "${VMA:?VMA must point at the vma binary}"
: "${TESTDATA:?TESTDATA must point at tests/data}"
[ -x "$VMA" ] || { echo "vma binary $VMA missing"; exit 1; }
export TZ=UTC LC_ALL=C

T=$(mktemp -d "${TMPDIR:-/tmp}/vmacli.XXXXXX")
_cleanup_pids=()
_cleanup_cmds=()
_cleanup() {
    local p c
    for p in "${_cleanup_pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for c in "${_cleanup_cmds[@]}"; do
        eval "$c" 2>/dev/null
    done
    rm -rf "$T"
}
# on_exit COMMAND: run COMMAND (a string, eval'ed) when the test ends.
on_exit() {
    _cleanup_cmds+=("$1")
}
trap _cleanup EXIT

TESTDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MKVMA="python3 $TESTDIR/mkvma.py"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1
    shift
    "$@" || fail "$what"
}

# run_vma ARGS...: run $VMA, capturing stdout in $out, stderr in $err, status in $rc.
run_vma() {
    out=$("$VMA" "$@" 2>"$T/.stderr")
    rc=$?
    err=$(cat "$T/.stderr")
}

expect_ok() {
    run_vma "$@"
    [ "$rc" -eq 0 ] || fail "vma $* exited $rc: $err"
    [ -z "$err" ] || fail "vma $* wrote to stderr: $err"
}

# expect_fail GIST ARGS...: exit status 1, one line on stderr that contains GIST.
expect_fail() {
    local gist=$1
    shift
    run_vma "$@"
    [ "$rc" -eq 1 ] || fail "vma $* exited $rc (want 1); stderr: $err"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "vma $*: stderr is not one line: $err"
    case "$err" in
    vma:*"$gist"*) ;;
    *) fail "vma $*: stderr '$err' lacks '$gist'" ;;
    esac
}

expect_usage() {
    run_vma "$@"
    [ "$rc" -eq 2 ] || fail "vma $* exited $rc (want 2 for a usage error); stderr: $err"
    [ -n "$err" ] || fail "vma $*: no message for a usage error"
}

# is_sparse FILE: allocated bytes smaller than the apparent size.
is_sparse() {
    local alloc size
    alloc=$(($(stat -c %b "$1") * $(stat -c %B "$1")))
    size=$(stat -c %s "$1")
    [ "$alloc" -lt "$size" ]
}

# with_timeout SECONDS COMMAND...: a hung vma is a failure, not a hung test run.
with_timeout() {
    timeout --kill-after=5 "$@"
}
