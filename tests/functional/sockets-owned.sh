#!/usr/bin/env bash
# Listening sockets belong to the vmad that made them (util/listen.h): a second vmad
# given the same NBD UNIX path, the same TCP port, or the same QMP socket is refused with
# a clear message (also through QMP's nbd-server-start), the first one keeps serving; a
# stale socket file is replaced; a file that is not a socket is refused and kept; and a
# vmad removes at exit only the socket file it created, never one that replaced it.
. "$(dirname "$0")/lib.bash"
need_tools qemu-io python3 timeout
VMAD=${VMAD:-$BUILDDIR/vmad}
[ -x "$VMAD" ] || fail "$VMAD not built (make test-build)"

truncate -s 16M "$T/a.raw" "$T/b.raw"
DISK_A="--blockdev driver=file,node-name=a,filename=$T/a.raw"
DISK_B="--blockdev driver=file,node-name=b,filename=$T/b.raw"

# second_vmad NAME ARGS...: run a vmad that must refuse to start; its stderr in $T/NAME.err
second_vmad() {
    local name=$1 rc=0
    shift
    timeout 20 "$VMAD" "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null || rc=$?
    [ $rc = 1 ] || { cat "$T/$name.err"; fail "$name: exit status $rc, expected 1"; }
}

expect_err() {  # expect_err NAME REGEX
    grep -qE "$2" "$T/$1.err" || { cat "$T/$1.err"; fail "$1: expected message /$2/"; }
}

# A serves NBD on a UNIX socket and QMP on a monitor socket.
start_a() {
    SERVER_PID=
    "$VMAD" $DISK_A --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export nbd,id=ea,node-name=a,writable=on --monitor "$T/qmp.sock" \
        --pidfile "$T/a.pid" >"$T/a.out" 2>"$T/server.log" </dev/null &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        [ -s "$T/a.pid" ] && break
        kill -0 $SERVER_PID 2>/dev/null || fail "vmad A did not start: $(cat "$T/server.log")"
        sleep 0.1
    done
    [ -s "$T/a.pid" ] || fail "vmad A not ready"
    NBD_SOCK=$T/nbd.sock NBD_PORT=
}
start_a
qio a 'write -P 0x11 0 64k'

# 1. the same NBD UNIX path
second_vmad b1 $DISK_B --nbd-server "addr.type=unix,addr.path=$T/nbd.sock"
expect_err b1 "^vmad: --nbd-server .*: nbd-server-start: .*/nbd.sock: in use by another process$"
[ -S "$T/nbd.sock" ] || fail "the second vmad removed A's NBD socket"
qio a 'read -P 0x11 0 64k'

# 2. the same QMP socket (with an NBD socket of its own, which it must remove again)
second_vmad b2 $DISK_B --nbd-server "addr.type=unix,addr.path=$T/nbd-b.sock" \
    --monitor "$T/qmp.sock"
expect_err b2 "^vmad: --monitor .*: monitor socket .*/qmp.sock: in use by another process$"
[ ! -e "$T/nbd-b.sock" ] || fail "the refused vmad left its own NBD socket behind"
[ -S "$T/qmp.sock" ] || fail "the second vmad removed A's monitor socket"
PYTHONPATH=$SRCDIR/tests/functional python3 - "$T/qmp.sock" <<'EOF' || fail "A's monitor"
import sys
from qmp import QMP
q = QMP(sys.argv[1]); q.negotiate()
assert [e["id"] for e in q.ok("query-block-exports")] == ["ea"]
EOF

# 3. nbd-server-start over QMP on A's NBD path, from a second vmad's monitor
"$VMAD" $DISK_B --monitor "$T/qmp-b.sock" >/dev/null 2>"$T/b3.err" </dev/null &
b3=$!
EXTRA_PIDS+=($b3)
PYTHONPATH=$SRCDIR/tests/functional python3 - "$T/qmp-b.sock" "$T/nbd.sock" <<'EOF' ||
import sys
from qmp import QMP
q = QMP(sys.argv[1]); q.negotiate()
r = q.cmd("nbd-server-start", {"addr": {"type": "unix", "path": sys.argv[2]}})
desc = r.get("error", {}).get("desc", "")
assert desc == "nbd-server-start: %s: in use by another process" % sys.argv[2], r
q.cmd("quit")
EOF
    fail "QMP nbd-server-start on a path in use"
wait $b3 || fail "second vmad (QMP) exit status $?"
[ -S "$T/nbd.sock" ] || fail "QMP nbd-server-start removed A's NBD socket"
qio a 'read -P 0x11 0 64k'

# 4. a socket file that replaced A's is not A's to remove: A leaves it at exit
mv "$T/nbd.sock" "$T/nbd-a-moved.sock"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' \
    "$T/nbd.sock"      # a stale socket now sits at A's path
stop_server_keep() {
    kill -TERM $SERVER_PID
    wait $SERVER_PID || fail "vmad A exit status $?"
    SERVER_PID=
}
stop_server_keep
[ -S "$T/nbd.sock" ] || fail "vmad A removed a socket file that was not its own"
[ ! -e "$T/qmp.sock" ] || fail "vmad A left its monitor socket behind"
rm -f "$T/nbd-a-moved.sock" "$T/a.pid"

# 5. a stale socket (nobody listens) is replaced
start_a
qio a 'read -P 0x11 0 64k'
stop_server
[ ! -e "$T/qmp.sock" ] || fail "monitor socket left behind"
rm -f "$T/a.pid"

# 6. a path that is not a socket is refused and kept
echo precious >"$T/plain"
second_vmad b6 $DISK_B --nbd-server "addr.type=unix,addr.path=$T/plain"
expect_err b6 "^vmad: --nbd-server .*: nbd-server-start: .*/plain: file exists and is not a socket$"
[ "$(cat "$T/plain")" = precious ] || fail "the non-socket file was changed"

# 7. TCP: the same port
start_server --tcp --blockdev a,"$T/a.raw" --export a,writable
second_vmad b7 $DISK_B --nbd-server "addr.type=inet,addr.host=127.0.0.1,addr.port=$NBD_PORT"
expect_err b7 "^vmad: --nbd-server .*: nbd-server-start: 127.0.0.1:$NBD_PORT: Address already in use$"
qio a 'read -P 0x11 0 64k'
stop_server
echo PASS
