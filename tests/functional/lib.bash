# tests/functional/lib.bash — shared helpers of the NBD functional tests (sourced).
#
# Server abstraction. A test describes what to serve with nbd-serve's arguments:
#     start_server [--tcp] --blockdev NODE,FILE[,ro][,direct] ... --export NODE[,writable] ...
# start_server runs the implementation named by $NBD_SERVER_IMPL (default "nbd-serve",
# the test-only tools/nbd-serve program) as the function server_start_$NBD_SERVER_IMPL
# with the same arguments, and returns once the server accepts clients. Afterwards:
#     SERVER_PID                  the server's pid (stop_server / kill_server use it)
#     NBD_SOCK or NBD_PORT        where it listens (UNIX socket, or 127.0.0.1:PORT with --tcp)
#     nbd_uri EXPORT              prints the client URI of an export
# A vmad implementation only has to provide server_start_vmad with the same contract.
#
# Every test gets a private directory $T (mktemp -d) that the EXIT trap removes after
# stopping the server by pid.

set -u
export LC_ALL=C

BUILDDIR=${BUILDDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
NBD_SERVE=${NBD_SERVE:-$BUILDDIR/tests/tools/nbd-serve}
NBD_SERVER_IMPL=${NBD_SERVER_IMPL:-nbd-serve}

T=$(mktemp -d "${TMPDIR:-/tmp}/vmad-nbd-test.XXXXXX")
BUILD_TMP=
SERVER_PID=
NBD_SOCK=
NBD_PORT=
EXTRA_PIDS=()

_cleanup() {
    local p
    for p in "${EXTRA_PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
    if [ -n "$SERVER_PID" ]; then
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$T"
    [ -z "$BUILD_TMP" ] || rm -rf "$BUILD_TMP"
}
trap _cleanup EXIT

# A scratch directory in the build tree, for tests that need a file system accepting
# O_DIRECT (/tmp may be tmpfs, which does not). Sets BUILD_TMP.
make_build_tmp() {
    mkdir -p "$BUILDDIR" || fail "mkdir $BUILDDIR"
    BUILD_TMP=$(mktemp -d "$BUILDDIR/tmp-nbd-test.XXXXXX") || fail "mktemp in $BUILDDIR"
}

fail() {
    echo "FAIL: $*" >&2
    if [ -s "$T/server.log" ]; then
        echo "--- server log (last lines) ---" >&2
        tail -n 20 "$T/server.log" >&2
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

# ---- the nbd-serve implementation ----

server_start_nbd-serve() {
    local tcp=0 args=() a
    for a in "$@"; do
        if [ "$a" = --tcp ]; then tcp=1; else args+=("$a"); fi
    done
    [ -x "$NBD_SERVE" ] || fail "$NBD_SERVE not built (make test-build)"

    local attempt
    for attempt in 1 2 3 4 5 6 7 8; do
        rm -f "$T/server.out"
        if [ $tcp = 1 ]; then
            NBD_PORT=$((20000 + (RANDOM * 7 + attempt * 131) % 40000))
            NBD_SOCK=
            "$NBD_SERVE" "${args[@]}" --tcp "127.0.0.1:$NBD_PORT" \
                >"$T/server.out" 2>>"$T/server.log" &
        else
            NBD_SOCK=$T/nbd.sock
            NBD_PORT=
            "$NBD_SERVE" "${args[@]}" --socket "$NBD_SOCK" \
                >"$T/server.out" 2>>"$T/server.log" &
        fi
        SERVER_PID=$!
        local i
        for i in $(seq 1 300); do
            if grep -q '^ready$' "$T/server.out" 2>/dev/null; then
                return 0
            fi
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            fail "server did not get ready in 30 s"
        fi
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
        # a taken port is worth another try; anything else is a failure
        if [ $tcp = 1 ] && grep -q 'Address already in use' "$T/server.log"; then
            continue
        fi
        fail "server failed to start: $(tail -n 1 "$T/server.log")"
    done
    fail "no free TCP port found"
}

start_server() {
    : >>"$T/server.log"
    "server_start_$NBD_SERVER_IMPL" "$@"
}

# Stop the server gently (SIGTERM) and check it exits 0 within 20 s.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    local i
    for i in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
        fail "server did not stop within 20 s of SIGTERM"
    fi
    local rc=0
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    [ $rc = 0 ] || fail "server exited with status $rc"
    if [ -n "$NBD_SOCK" ] && [ -e "$NBD_SOCK" ]; then
        fail "server left its socket $NBD_SOCK behind"
    fi
}

# Kill the server hard (durability tests).
kill_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -9 "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

server_alive() {
    [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null
}

nbd_uri() {
    if [ -n "$NBD_PORT" ]; then
        echo "nbd://127.0.0.1:$NBD_PORT/$1"
    else
        echo "nbd+unix:///$1?socket=$NBD_SOCK"
    fi
}

# qio EXPORT 'cmd' ... — qemu-io on an export; fails the test if any command fails.
qio() {
    local uri
    uri=$(nbd_uri "$1")
    shift
    local args=() c
    for c in "$@"; do
        args+=(-c "$c")
    done
    local out rc=0
    out=$(qemu-io -f raw "$uri" "${args[@]}" 2>&1) || rc=$?
    if [ $rc != 0 ] || echo "$out" | grep -qiE 'fail|error|mismatch'; then
        echo "$out" >&2
        fail "qemu-io $uri ${args[*]} (exit $rc)"
    fi
}

# Fill a file with reproducible pseudo-random data: make_random FILE SIZE_MIB
make_random() {
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
}
