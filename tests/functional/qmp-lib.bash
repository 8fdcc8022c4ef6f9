# tests/functional/qmp-lib.bash — shared helpers of the vmad/QMP functional tests (sourced).
#
#   start_vmad ARGS...   run $VMAD with ARGS in the background (log in $T/vmad.log);
#                        VMAD_PID is its pid. The caller waits for what it needs, e.g.
#                        wait_socket "$T/qmp.sock".
#   wait_exit [SECS]     wait for vmad to exit; VMAD_RC is its exit status (124: still
#                        running after SECS seconds)
#   py ARGS... <<'EOF'   run a python3 script with tests/functional on the path (qmp.py)
#
# Every test gets a private directory $T (mktemp -d); the EXIT trap kills vmad by pid and
# removes $T.

set -u
export LC_ALL=C

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMAD=${VMAD:-$BUILDDIR/vmad}

T=$(mktemp -d "${TMPDIR:-/tmp}/vmad-qmp-test.XXXXXX")
VMAD_PID=

_qmp_cleanup() {
    if [ -n "$VMAD_PID" ]; then
        kill -9 "$VMAD_PID" 2>/dev/null
        wait "$VMAD_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap _qmp_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    if [ -s "$T/vmad.log" ]; then
        echo "--- vmad log (last lines) ---" >&2
        tail -n 20 "$T/vmad.log" >&2
    fi
    exit 1
}

skip() {
    echo "$*"
    exit 77
}

need_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "SKIP: $t is not installed"
    done
}

[ -x "$VMAD" ] || fail "$VMAD not built (make)"
need_tools python3

start_vmad() {
    "$VMAD" "$@" >>"$T/vmad.log" 2>&1 &
    VMAD_PID=$!
}

# wait_socket PATH: until PATH is a socket (vmad is up), or fail after 10 s
wait_socket() {
    local i
    for i in $(seq 1 200); do
        [ -S "$1" ] && return 0
        if [ -n "$VMAD_PID" ] && ! kill -0 "$VMAD_PID" 2>/dev/null; then
            fail "vmad exited before creating $1"
        fi
        sleep 0.05
    done
    fail "no socket $1 after 10 s"
}

wait_exit() {
    local secs=${1:-10} i
    VMAD_RC=124
    for i in $(seq 1 $((secs * 20))); do
        if ! kill -0 "$VMAD_PID" 2>/dev/null; then
            wait "$VMAD_PID"
            VMAD_RC=$?
            VMAD_PID=
            return 0
        fi
        sleep 0.05
    done
}

py() {
    PYTHONPATH="$SRCDIR/tests/functional${PYTHONPATH:+:$PYTHONPATH}" python3 - "$@"
}

# check_log: vmad logged no GLib criticals/errors and no sanitizer report
check_log() {
    if grep -E "CRITICAL|ERROR|runtime error|Sanitizer" "$T/vmad.log" >&2; then
        fail "vmad logged errors"
    fi
}
