# tests/functional/lib.bash — shared helpers of the NBD functional tests (sourced).
#
# Server abstraction. A test describes what to serve with nbd-serve's arguments:
#     start_server [--tcp] --blockdev NODE,FILE[,ro][,direct] ... --export NODE[,writable] ...
# plus --max-connections N. start_server runs the implementation named by
# $NBD_SERVER_IMPL: "vmad" (default: the daemon, $VMAD) or "nbd-serve" (the
# test-only tests/tools/nbd-serve program, the NBD server without the monitor), and returns once the server accepts clients (or fails
# the test; try_start_server returns 1 instead). Afterwards:
#     SERVER_PID                  the server's pid (stop_server / kill_server use it)
#     NBD_SOCK or NBD_PORT        where it listens (UNIX socket, or 127.0.0.1:PORT with --tcp)
#     nbd_uri EXPORT              prints the client URI of an export
# Another implementation needs server_argv_IMPL and server_ready_IMPL (see below).
#
# The rest (fail, skip, requires, $T and the cleanup at exit, which also stops the server
# by pid) is tests/lib.bash.

. "$(dirname "${BASH_SOURCE[0]}")/../lib.bash"

NBD_SERVE=${NBD_SERVE:-$BUILDDIR/tests/tools/nbd-serve}
NBD_SERVER_IMPL=${NBD_SERVER_IMPL:-vmad}

BUILD_TMP=
SERVER_PID=
NBD_SOCK=
NBD_PORT=
# the cleanup's pid list under the name the NBD tests use: EXTRA_PIDS+=($!)
declare -n EXTRA_PIDS=_cleanup_pids
show_on_fail "$T/server.log" "server log"
# Work inside $T: tools that drop files into the current directory (fio's verify
# state) must not touch the source tree.
cd "$T" || exit 1

# A scratch directory in the build tree, for tests that need a file system accepting
# O_DIRECT (/tmp may be tmpfs, which does not). Sets BUILD_TMP.
make_build_tmp() {
    new_tmpdir BUILD_TMP "$BUILDDIR"
}

# ---- implementations ----
# server_argv_IMPL ARGS... sets SERVER_ARGV (the command line) from the common
# arguments plus LISTEN (unix:PATH or tcp:PORT); server_ready_IMPL says whether the
# started server accepts clients (every export added).

_split_common_args() {      # sets _TCP, _MAXCONN, _BUDGET, _ARGS (the rest)
    _TCP=0 _MAXCONN= _BUDGET= _ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
        --tcp) _TCP=1 ;;
        --max-connections) _MAXCONN=$2; shift ;;
        --buffer-budget) _BUDGET=$2; shift ;;   # vmad only: --nbd-buffer-budget
        *) _ARGS+=("$1") ;;
        esac
        shift
    done
}

server_argv_nbd-serve() {
    _split_common_args "$@"
    SERVER_ARGV=("$NBD_SERVE" "${_ARGS[@]}")
    [ -z "$_BUDGET" ] || fail "--buffer-budget is a vmad option"
    [ -z "$_MAXCONN" ] || SERVER_ARGV+=(--max-connections "$_MAXCONN")
    case $LISTEN in
    unix:*) SERVER_ARGV+=(--socket "${LISTEN#unix:}") ;;
    tcp:*) SERVER_ARGV+=(--tcp "127.0.0.1:${LISTEN#tcp:}") ;;
    esac
}

server_ready_nbd-serve() {
    grep -q '^ready$' "$T/server.out" 2>/dev/null
}

# vmad: the same disks and exports through its qemu-storage-daemon-style options.
server_argv_vmad() {
    _split_common_args "$@"
    SERVER_ARGV=("${VMAD:-$BUILDDIR/vmad}")
    [ -z "$_BUDGET" ] || SERVER_ARGV+=(--nbd-buffer-budget "$_BUDGET")
    local a val node file flags f n=0 nbd
    set -- "${_ARGS[@]}"
    while [ $# -gt 0 ]; do
        a=$1 val=$2
        shift 2
        case $a in
        --blockdev)
            node=${val%%,*} val=${val#*,} file=${val%%,*} flags=
            [ "$val" = "$file" ] || flags=${val#*,}
            a="driver=file,node-name=$node,filename=${file//,/,,}"
            for f in ${flags//,/ }; do
                case $f in
                ro) a+=",read-only=on" ;;
                direct) a+=",cache.direct=on" ;;
                esac
            done
            SERVER_ARGV+=(--blockdev "$a")
            ;;
        --export)
            node=${val%%,*} flags=
            [ "$val" = "$node" ] || flags=${val#*,}
            n=$((n + 1))
            a="nbd,id=export$n,node-name=$node"
            for f in ${flags//,/ }; do
                case $f in
                writable) a+=",writable=on" ;;
                name=*) a+=",$f" ;;
                esac
            done
            EXPORT_OPTS+=(--export "$a")
            ;;
        esac
    done
    case $LISTEN in
    unix:*) nbd="addr.type=unix,addr.path=${LISTEN#unix:}" ;;
    tcp:*) nbd="addr.type=inet,addr.host=127.0.0.1,addr.port=${LISTEN#tcp:}" ;;
    esac
    [ -z "$_MAXCONN" ] || nbd+=",max-connections=$_MAXCONN"
    SERVER_ARGV+=(--nbd-server "$nbd" "${EXPORT_OPTS[@]}" --pidfile "$T/vmad.pid")
    EXPORT_OPTS=()
}
EXPORT_OPTS=()

server_ready_vmad() {
    [ -s "$T/vmad.pid" ]
}

# Start a server; 0 once it serves, 1 if it failed to start (its stderr is in
# $T/server.log). Takes the common arguments described at the top.
try_start_server() {
    local tcp=0 a
    for a in "$@"; do
        [ "$a" != --tcp ] || tcp=1
    done
    local attempt i
    for attempt in 1 2 3 4 5 6 7 8; do
        rm -f "$T/server.out" "$T/vmad.pid"
        : >"$T/server.log"
        if [ $tcp = 1 ]; then
            NBD_PORT=$((20000 + (RANDOM * 7 + attempt * 131) % 40000))
            NBD_SOCK=
            LISTEN=tcp:$NBD_PORT
        else
            NBD_SOCK=$T/nbd.sock
            NBD_PORT=
            LISTEN=unix:$NBD_SOCK
        fi
        "server_argv_$NBD_SERVER_IMPL" "$@"
        [ -x "${SERVER_ARGV[0]}" ] || fail "${SERVER_ARGV[0]} not built (make test-build)"
        "${SERVER_ARGV[@]}" >"$T/server.out" 2>>"$T/server.log" </dev/null &
        SERVER_PID=$!
        cleanup_pid "$SERVER_PID"
        for i in $(seq 1 300); do
            "server_ready_$NBD_SERVER_IMPL" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            fail "server did not get ready in 30 s"
        fi
        wait "$SERVER_PID" 2>/dev/null
        forget_pid "$SERVER_PID"
        SERVER_PID=
        # a taken port is worth another try; anything else is a failure
        if [ $tcp = 1 ] && grep -q 'Address already in use' "$T/server.log"; then
            continue
        fi
        return 1
    done
    fail "no free TCP port found"
}

start_server() {
    try_start_server "$@" || fail "server failed to start: $(tail -n 1 "$T/server.log")"
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
        forget_pid "$SERVER_PID"
        SERVER_PID=
        fail "server did not stop within 20 s of SIGTERM"
    fi
    local rc=0
    wait "$SERVER_PID" || rc=$?
    forget_pid "$SERVER_PID"
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
    forget_pid "$SERVER_PID"
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

# start_flood EXPORT ARGS...: tests/tools/nbd-flood.py against the server's EXPORT with
# ARGS, its stdin a FIFO held open on descriptor 7 (end_flood closes it, which ends the
# clients); returns once it printed "ready" (fails after 60 s or if it dies). Sets
# FLOOD_PID.
start_flood() {
    local export=$1; shift
    mkfifo "$T/flood.in"
    python3 "$SRCDIR/tests/tools/nbd-flood.py" "$NBD_SOCK" "$export" "$@" \
        <"$T/flood.in" >"$T/flood.out" 2>&1 &
    FLOOD_PID=$!
    EXTRA_PIDS+=("$FLOOD_PID")
    exec 7>"$T/flood.in"
    local _
    for _ in $(seq 1 600); do
        grep -q '^ready$' "$T/flood.out" && return 0
        kill -0 "$FLOOD_PID" 2>/dev/null || { cat "$T/flood.out"; fail "flood client died"; }
        sleep 0.1
    done
    fail "flood client not ready in 60 s"
}

end_flood() {
    exec 7>&-
    wait "$FLOOD_PID" 2>/dev/null
}
