#!/usr/bin/env bash
# The vmad command line: --help/--version; startup errors are one line "vmad: ..." on
# stderr with exit status 1 and leave no socket or pid file behind; --blockdev,
# --nbd-server and --export do what the QMP commands do (qemu-io writes through the
# export); qemu-storage-daemon's --chardev/--monitor chardev= form; a stale socket is
# replaced, a live one or a locked pid file is refused; SIGINT stops vmad cleanly.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io

truncate -s 16M "$T/a.raw"

"$VMAD" --help >"$T/out" 2>&1 || fail "--help exit status"
grep -q "^Usage: vmad" "$T/out" || fail "--help text"
[ "$("$VMAD" --version)" = "vmad 0.1.0" ] || fail "--version: $("$VMAD" --version)"

# a refused start leaves nothing in $T but a.raw and the files the case made itself
left=(--absent "$T/m.sock" --absent "$T/n.sock" --absent "$T/pid")

D="driver=file,node-name=d0,filename=$T/a.raw"
expect_startup_error "${left[@]}" "unknown option --bogus \(see vmad --help\)" --bogus
expect_startup_error "${left[@]}" "--blockdev needs an argument \(see vmad --help\)" --blockdev
expect_startup_error "${left[@]}" "unexpected argument 'stray' \(see vmad --help\)" stray
expect_startup_error "${left[@]}" \
    "--blockdev driver=file,node-name=d0: Parameter 'filename' is missing" \
    --monitor "$T/m.sock" --blockdev driver=file,node-name=d0
expect_startup_error "${left[@]}" "--blockdev .*: Parameter 'read-only' expects 'on' or 'off'" \
    --blockdev "$D,read-only=maybe"
expect_startup_error "${left[@]}" \
    "--blockdev .*: Parameter 'driver' does not accept value 'qcow2'" \
    --blockdev "driver=qcow2,node-name=d0,filename=$T/a.raw"
expect_startup_error "${left[@]}" \
    "--blockdev .*: Parameter 'bogus' is unexpected" --blockdev "$D,bogus=1"
expect_startup_error "${left[@]}" "--blockdev .*nope.raw.*" \
    --blockdev "driver=file,node-name=d0,filename=$T/nope.raw"
expect_startup_error "${left[@]}" "--export nbd,id=e0,node-name=d0: NBD server not running" \
    --blockdev "$D" --export nbd,id=e0,node-name=d0
expect_startup_error "${left[@]}" "--export .*" --monitor "$T/m.sock" --blockdev "$D" \
    --nbd-server "addr.type=unix,addr.path=$T/n.sock" --export nbd,id=e0,node-name=nosuch
expect_startup_error "${left[@]}" "--nbd-server .*: Parameter 'addr.path' is missing" \
    --nbd-server addr.type=unix
expect_startup_error "${left[@]}" "--nbd-server .*: Parameter 'max-connections' expects uint32" \
    --nbd-server "addr.type=unix,addr.path=$T/n.sock,max-connections=x"
expect_startup_error "${left[@]}" \
    "--monitor chardev=c9: chardev 'c9' not found" --monitor chardev=c9
expect_startup_error "${left[@]}" "--monitor .*: Parameter 'mode' expects an octal permission .*" \
    --monitor "$T/m.sock,mode=999"
expect_startup_error "${left[@]}" \
    "--monitor .*: mode=readline: .*" --monitor "$T/m.sock,mode=readline"
expect_startup_error "${left[@]}" "--monitor .*: Parameter 'colour' is unexpected" \
    --monitor "$T/m.sock,colour=red"
expect_startup_error "${left[@]}" "--chardev .*: only a listening socket is supported .*" \
    --chardev "socket,id=c0,path=$T/m.sock,server=on,wait=on"
expect_startup_error "${left[@]}" \
    "--chardev .*: chardev backend 'pty' is not supported: use socket" \
    --chardev pty,id=c0
touch "$T/plain"
expect_startup_error "${left[@]}" \
    "--monitor .*: monitor socket .*/plain: file exists and is not a socket" \
    --monitor "$T/plain"
expect_startup_error "${left[@]}" "--pidfile: .*/nodir/pid: No such file or directory" \
    --monitor "$T/m.sock" --pidfile "$T/nodir/pid"

# a stale socket file (nobody listening) is replaced
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
    "$T/m.sock"
[ -S "$T/m.sock" ] || fail "could not make a stale socket"

# the whole thing from the command line, qemu-storage-daemon style
start_vmad --blockdev "$D,cache.direct=off" \
    --nbd-server "addr.type=unix,addr.path=$T/n.sock,max-connections=8" \
    --export "type=nbd,id=e0,node-name=d0,name=disk0,writable=on" \
    --chardev "socket,path=$T/m.sock,server=on,wait=off,id=c0" --monitor chardev=c0 \
    --pidfile "$T/pid"
wait_socket "$T/m.sock"
wait_socket "$T/n.sock"
for i in $(seq 1 100); do [ -s "$T/pid" ] && break; sleep 0.05; done
[ "$(cat "$T/pid")" = "$VMAD_PID" ] || fail "pid file holds '$(cat "$T/pid")'"

qemu-io -f raw -c "write -P 0x5a 4M 64k" -c flush "nbd+unix:///disk0?socket=$T/n.sock" \
    >"$T/qio" 2>&1 || fail "qemu-io write: $(cat "$T/qio")"
cmp -s <(dd if="$T/a.raw" bs=64k skip=64 count=1 2>/dev/null) \
    <(head -c 65536 /dev/zero | tr '\0' '\132') || fail "data did not reach a.raw"

py "$T" <<'EOF' || fail "QMP view of the command line"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/m.sock")
q.negotiate()
assert q.ok("query-block-exports") == [{"id": "e0", "type": "nbd", "node-name": "d0",
                                        "shutting-down": False}]
assert [b["device"] for b in q.ok("query-block")] == ["d0"]
EOF

# a second vmad may not take over the pid file or the monitor socket
"$VMAD" --pidfile "$T/pid" 2>"$T/err2"
[ $? = 1 ] && grep -q "^vmad: --pidfile: .*/pid: in use by another running vmad$" "$T/err2" \
    || fail "second vmad with the same pid file: $(cat "$T/err2")"
"$VMAD" --monitor "$T/m.sock" 2>"$T/err2"
[ $? = 1 ] && grep -q "^vmad: --monitor .*: monitor socket .*/m.sock: in use by another process$" \
    "$T/err2" || fail "second vmad on the same socket: $(cat "$T/err2")"
[ "$(cat "$T/pid")" = "$VMAD_PID" ] || fail "pid file changed"

kill -INT "$VMAD_PID"
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after SIGINT"
for f in m.sock n.sock pid; do
    [ ! -e "$T/$f" ] || fail "$f left behind"
done
# systemd readiness: READY=1 once the sockets exist, STOPPING=1 on the way out
py "$VMAD" "$T" <<'EOF' || fail "sd_notify"
import os, socket, subprocess, sys
vmad, T = sys.argv[1], sys.argv[2]
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(T + "/notify")
ns.settimeout(10)
p = subprocess.Popen([vmad, "--monitor", T + "/m.sock"],
                     env=dict(os.environ, NOTIFY_SOCKET=T + "/notify"))
try:
    assert ns.recv(100) == b"READY=1"
    assert os.path.exists(T + "/m.sock")
    p.terminate()
    assert ns.recv(100) == b"STOPPING=1"
    assert p.wait(10) == 0
finally:
    p.kill()
EOF
check_log
echo "PASS"
