# tests/cli/lib.bash — for the golden CLI tests (sourced, not a test itself: tests/run.sh
# runs *.sh).
#
# tests/lib.bash provides $T, fail, skip, requires, on_exit, cleanup_pid, with_timeout,
# is_sparse and the cleanup at exit. This file adds what the CLI tests compare:
#   check DESCRIPTION COMMAND...  the command must succeed
#   run_vma ARGS...        run $VMA: stdout in $out, stderr in $err, status in $rc
#   expect_ok ARGS...      exit 0 and nothing on stderr
#   expect_fail GIST ARGS...  exit 1, exactly one stderr line "vma: ...GIST..."
#   expect_usage ARGS...   exit 2 with a message
#   MKVMA                  the command that builds hand-made archives (mkvma.py)
#   spec NAME JSON         build $T/NAME.vma from the mkvma.py spec JSON (kept in
#                          $T/NAME.json)
. "$(dirname "${BASH_SOURCE[0]}")/../lib.bash"

[ -x "$VMA" ] || fail "vma binary $VMA missing"

TESTDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MKVMA="python3 $TESTDIR/mkvma.py"

spec() {
    printf '%s\n' "$2" >"$T/$1.json"
    $MKVMA "$T/$1.json" "$T/$1.vma" || fail "mkvma $1"
}

check() {
    local what=$1
    shift
    "$@" || fail "$what"
}

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
