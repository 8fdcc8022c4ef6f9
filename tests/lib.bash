# tests/lib.bash — the one library of the shell tests (tests/cli/*.sh, tests/functional/*.sh).
#
# Sourced, never run. tests/cli/lib.bash, tests/functional/lib.bash (NBD servers) and
# tests/functional/qmp-lib.bash source it and add only what is their own; a test sources
# one of those, or this file directly. Sourcing it twice is harmless.
#
# A test script: exit 0 passes, exit 77 skips (after printing why), anything else fails.
# tests/run.sh counts a skip as a failure in CI (CI=true): the install step provides
# every tool, so a skip there means a broken setup, not a missing optional tool.
#
# Environment (tests/run.sh exports it; the defaults let a script run on its own):
#   SRCDIR BUILDDIR VMA VMAD TESTDATA
#
# Outcome
#   fail MESSAGE...        print "FAIL: MESSAGE" on stderr, then what on_fail registered
#                          (the end of the vmad log, injected faults, ...), and exit 1
#   skip MESSAGE...        print MESSAGE and exit 77
#   requires TOOL...       skip unless every TOOL is on $PATH ("SKIP: TOOL is not
#                          installed"); need_tools is the same function under its old name
#   on_fail COMMAND        run COMMAND (a string, eval'ed) when fail is called: for
#                          showing context; show_on_fail FILE TITLE shows FILE's last lines
#
# Cleanup: one EXIT trap, set here. Do not set a trap of your own (it would replace this
# one); register what must go instead. At exit, in this order: every registered pid still
# alive is killed (SIGKILL) and reaped, the on_exit commands run (last registered first),
# the registered directories are removed.
#   $T                     the test's own temporary directory (mktemp -d), removed at exit
#   new_tmpdir VAR [PARENT]  make another temporary directory (in PARENT, default $TMPDIR
#                          or /tmp), store its path in VAR, remove it at exit. PARENT may
#                          be "$BUILDDIR" for a file system that accepts O_DIRECT.
#   on_exit COMMAND        run COMMAND (a string, eval'ed) at exit
#   cleanup_pid PID...     kill PID at exit if it still runs: only pids this test started
#                          ($! of a background job, or a pid file our own child wrote)
#   forget_pid PID...      PID has been reaped: do not touch it at exit
#   (_cleanup_pids is the registered list; `_cleanup_pids+=($!)` works too.)
#
# vmad
#   start_vmad ARGS...     start $VMAD with ARGS in the background, its stdout and stderr
#                          appended to $VMAD_LOG ($T/vmad.log), and wait until every UNIX
#                          socket named in ARGS (--monitor PATH, --monitor path=PATH,
#                          --chardev socket,path=PATH, --nbd-server ...,addr.path=PATH)
#                          exists; fails the test if vmad exits first or after 30 s.
#                          Sets VMAD_PID (killed at exit) and VMAD_QMP (the first monitor
#                          socket, if any).
#   spawn_vmad ARGS...     the same without waiting; wait_vmad waits afterwards
#   wait_socket PATH       until PATH is a socket; fails if vmad exits first or after 30 s
#   wait_exit [SECS]       wait up to SECS (10) for vmad to exit; VMAD_RC is its exit
#                          status, 124 if it still runs
#   quit_vmad [SECS]       QMP quit on $VMAD_QMP (SIGTERM if vmad has no monitor), wait up
#                          to SECS (30) for the exit, fail unless the status is 0, check_log
#   stop_vmad SIGNAL [SECS]  the same, ended by SIGNAL (TERM, INT)
#   check_log              fail if the vmad log holds a GLib critical/error or a
#                          sanitizer report
#   expect_startup_error [-F] [--absent FILE]... MESSAGE ARGS...
#                          run $VMAD ARGS (10 s at most): exit status 1, nothing on
#                          stdout, one stderr line "vmad: MESSAGE", where MESSAGE is an
#                          extended regex (matched whole) or with -F a fixed string; each
#                          FILE must not exist afterwards (sockets, pid files). The output
#                          is left in $T/out and $T/err.
#   py ARGS... <<'EOF'     run a python3 script from stdin, tests/functional on its path
#                          (qmp.py: QMP client; pitlib.py)
#
# Small helpers
#   with_timeout SECS COMMAND...  a hung command is a failure, not a hung test run
#   is_sparse FILE         allocated bytes fewer than the apparent size
#   make_random FILE MIB   FILE of MIB MiB random bytes

[ -z "${_VMA_TESTLIB:-}" ] || return 0
_VMA_TESTLIB=1

set -u
export LC_ALL=C TZ=UTC

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMA=${VMA:-$BUILDDIR/vma}
VMAD=${VMAD:-$BUILDDIR/vmad}
TESTDATA=${TESTDATA:-$SRCDIR/tests/data}
export SRCDIR BUILDDIR VMA VMAD TESTDATA

# ---- outcome ---------------------------------------------------------------------------

_fail_hooks=()

on_fail() {
    _fail_hooks+=("$1")
}

# show_on_fail FILE TITLE: a failing test shows the last 20 lines of FILE, if it has any.
show_on_fail() {
    on_fail "_show_tail $(printf '%q %q' "$1" "$2")"
}

_show_tail() {
    [ -s "$1" ] || return 0
    echo "--- $2 (last lines) ---" >&2
    tail -n 20 "$1" >&2
}

fail() {
    echo "FAIL: $*" >&2
    local h
    for h in "${_fail_hooks[@]}"; do
        eval "$h"
    done
    exit 1
}

skip() {
    echo "$*"
    exit 77
}

requires() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "SKIP: $t is not installed"
    done
}

need_tools() {
    requires "$@"
}

# ---- cleanup ---------------------------------------------------------------------------

_cleanup_pids=()
_cleanup_cmds=()
_cleanup_dirs=()

on_exit() {
    _cleanup_cmds+=("$1")
}

cleanup_pid() {
    _cleanup_pids+=("$@")
}

forget_pid() {
    local p f keep=()
    for p in "${_cleanup_pids[@]}"; do
        for f in "$@"; do
            [ "$p" != "$f" ] || continue 2
        done
        keep+=("$p")
    done
    _cleanup_pids=("${keep[@]}")
}

_cleanup() {
    # only the test's own shell cleans up, not a subshell that inherited the trap
    [ "$BASHPID" = "$$" ] || return 0
    local p i
    for p in "${_cleanup_pids[@]}"; do
        [ -n "$p" ] || continue
        kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    _cleanup_pids=()
    for ((i = ${#_cleanup_cmds[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_cmds[i]}" 2>/dev/null
    done
    _cleanup_cmds=()
    for p in "${_cleanup_dirs[@]}"; do
        rm -rf "$p"
    done
    _cleanup_dirs=()
    return 0
}
trap _cleanup EXIT

new_tmpdir() {
    local parent=${2:-${TMPDIR:-/tmp}} d name
    name=$(basename "$0" .sh)
    mkdir -p "$parent" || fail "mkdir $parent"
    # short: UNIX socket paths in it must stay below 108 bytes
    d=$(mktemp -d "$parent/vmatest-${name:0:16}.XXXXXX") || fail "mktemp -d in $parent"
    _cleanup_dirs+=("$d")
    printf -v "$1" '%s' "$d"
}

new_tmpdir T

# ---- vmad ------------------------------------------------------------------------------

VMAD_PID=
VMAD_QMP=
VMAD_RC=
VMAD_LOG=$T/vmad.log
_vmad_sockets=()
show_on_fail "$VMAD_LOG" "vmad log"

# _vmad_socket_args ARGS...: the UNIX sockets vmad's command line names (sets
# _vmad_sockets and VMAD_QMP)
_vmad_socket_args() {
    local opt val kv parts
    _vmad_sockets=()
    VMAD_QMP=
    while [ $# -gt 0 ]; do
        opt=$1 val=${2:-}
        case $opt in
        --monitor)
            shift
            if [[ $val != *=* ]]; then
                _vmad_sockets+=("$val")
                VMAD_QMP=${VMAD_QMP:-$val}
            fi
            IFS=, read -r -a parts <<<"$val"
            for kv in "${parts[@]}"; do
                case $kv in
                path=*) _vmad_sockets+=("${kv#path=}"); VMAD_QMP=${VMAD_QMP:-${kv#path=}} ;;
                chardev=*) VMAD_QMP=${VMAD_QMP:-chardev:${kv#chardev=}} ;;
                esac
            done
            ;;
        --chardev | --nbd-server)
            shift
            IFS=, read -r -a parts <<<"$val"
            for kv in "${parts[@]}"; do
                case $kv in
                path=* | addr.path=*) _vmad_sockets+=("${kv#*path=}") ;;
                esac
            done
            ;;
        esac
        shift
    done
    # --monitor chardev=ID: the socket of --chardev ...,id=ID,...,path=P
    if [[ $VMAD_QMP == chardev:* ]]; then
        local id=${VMAD_QMP#chardev:}
        VMAD_QMP=
        set -- "${_vmad_args[@]}"
        while [ $# -gt 1 ]; do
            if [ "$1" = --chardev ] && [[ ",$2," == *",id=$id,"* ]]; then
                IFS=, read -r -a parts <<<"$2"
                for kv in "${parts[@]}"; do
                    [[ $kv != path=* ]] || VMAD_QMP=${kv#path=}
                done
            fi
            shift
        done
    fi
}

spawn_vmad() {
    [ -x "$VMAD" ] || fail "$VMAD not built (make test-build)"
    _vmad_args=("$@")
    _vmad_socket_args "$@"
    "$VMAD" "$@" >>"$VMAD_LOG" 2>&1 </dev/null &
    VMAD_PID=$!
    cleanup_pid "$VMAD_PID"
}

wait_vmad() {
    local s
    for s in "${_vmad_sockets[@]}"; do
        wait_socket "$s"
    done
}

start_vmad() {
    spawn_vmad "$@"
    wait_vmad
}

wait_socket() {
    local i
    for i in $(seq 1 600); do
        [ -S "$1" ] && return 0
        if [ -n "$VMAD_PID" ] && ! kill -0 "$VMAD_PID" 2>/dev/null; then
            fail "vmad exited before creating $1"
        fi
        sleep 0.05
    done
    fail "no socket $1 after 30 s"
}

wait_exit() {
    local secs=${1:-10} i
    VMAD_RC=124
    for i in $(seq 1 $((secs * 20))); do
        if ! kill -0 "$VMAD_PID" 2>/dev/null; then
            wait "$VMAD_PID"
            VMAD_RC=$?
            forget_pid "$VMAD_PID"
            VMAD_PID=
            return 0
        fi
        sleep 0.05
    done
}

# _vmad_expect_exit SECS HOW: vmad exits with status 0 within SECS, with a clean log
_vmad_expect_exit() {
    wait_exit "$1"
    [ "$VMAD_RC" != 124 ] || fail "vmad still running $1 s after $2"
    [ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after $2"
    check_log
}

quit_vmad() {
    local secs=${1:-30}
    [ -n "$VMAD_PID" ] || fail "quit_vmad: no vmad running"
    if [ -z "$VMAD_QMP" ]; then
        stop_vmad TERM "$secs"
        return
    fi
    py "$VMAD_QMP" <<'EOF' || fail "QMP quit"
import sys
from qmp import QMP
q = QMP(sys.argv[1])
q.negotiate()
q.ok("quit")
EOF
    _vmad_expect_exit "$secs" quit
}

stop_vmad() {
    local sig=$1 secs=${2:-30}
    [ -n "$VMAD_PID" ] || fail "stop_vmad: no vmad running"
    kill -"$sig" "$VMAD_PID" || fail "kill -$sig vmad"
    _vmad_expect_exit "$secs" "SIG$sig"
}

check_log() {
    if grep -E "CRITICAL|ERROR|runtime error|Sanitizer" "$VMAD_LOG" >&2; then
        fail "vmad logged errors"
    fi
}

py() {
    PYTHONPATH="$SRCDIR/tests/functional${PYTHONPATH:+:$PYTHONPATH}" python3 - "$@"
}

expect_startup_error() {
    local fixed=0 absent=() msg rc=0 f
    while [ $# -gt 0 ]; do
        case $1 in
        -F) fixed=1; shift ;;
        --absent) absent+=("$2"); shift 2 ;;
        *) break ;;
        esac
    done
    msg=$1
    shift
    timeout 10 "$VMAD" "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ $rc = 1 ] || fail "vmad $*: exit status $rc, expected 1 ($(cat "$T/err"))"
    [ ! -s "$T/out" ] || fail "vmad $*: wrote to stdout: $(cat "$T/out")"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "vmad $*: stderr is not one line: $(cat "$T/err")"
    if [ $fixed = 1 ]; then
        grep -qxF "vmad: $msg" "$T/err" ||
            fail "vmad $*: stderr '$(cat "$T/err")' != 'vmad: $msg'"
    else
        grep -qE "^vmad: $msg\$" "$T/err" || fail "vmad $*: stderr '$(cat "$T/err")' !~ '$msg'"
    fi
    for f in "${absent[@]}"; do
        [ ! -e "$f" ] || fail "vmad $*: left $f behind"
    done
}

# ---- small helpers ---------------------------------------------------------------------

with_timeout() {
    timeout --kill-after=5 "$@"
}

is_sparse() {
    local alloc size
    alloc=$(($(stat -c %b "$1") * $(stat -c %B "$1")))
    size=$(stat -c %s "$1")
    [ "$alloc" -lt "$size" ]
}

make_random() {
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
}
