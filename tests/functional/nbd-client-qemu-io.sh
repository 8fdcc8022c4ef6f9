#!/usr/bin/env bash
# vmad's nbd driver (a libnbd client) over a qcow2 image that qemu-storage-daemon exports
# on a UNIX socket, and over one qemu-nbd exports on 127.0.0.1. qemu-io writes patterns
# through vmad's own export — plain writes, a write larger than one NBD request (40 MiB),
# FUA writes, write-zeroes with and without unmap, a discard — reads them back through
# vmad, and then qemu-io reads the qcow2 image itself (after the servers stopped): it holds
# what was written through both hops. Block status through vmad shows the qcow2 image's
# unallocated clusters as holes. Errors: a read-only export opened writable, a server that
# is not there, an export that does not exist — each a one-line startup error naming the
# node; read-only=on over a read-only export works and refuses writes.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-storage-daemon qemu-nbd qemu-img qemu-io nbdinfo
MiB=1048576

qemu-img create -q -f qcow2 "$T/a.qcow2" 64M || fail "qemu-img create"
qemu-io -f qcow2 -c "write -P 0x11 1M 1M" "$T/a.qcow2" >/dev/null || fail "qemu-io prefill"

qemu-storage-daemon \
    --blockdev "driver=file,node-name=f0,filename=$T/a.qcow2" \
    --blockdev "driver=qcow2,node-name=q0,file=f0" \
    --nbd-server "addr.type=unix,addr.path=$T/qsd.sock" \
    --export "type=nbd,id=x0,node-name=q0,name=img,writable=on" >"$T/qsd.log" 2>&1 &
QSD_PID=$!
cleanup_pid $QSD_PID
wait_socket "$T/qsd.sock"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=nbd,node-name=drive-scsi0,server.type=unix,server.path=$T/qsd.sock,export=img" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
U="nbd+unix:///drive-scsi0?socket=$T/nbd.sock"

out=$(qemu-io -f raw \
    -c "write -P 0x22 4M 40M" \
    -c "write -P 0x33 -f 50M 64k" \
    -c "write -P 0x44 52M 1M" \
    -c "write -z 52M 64k" \
    -c "write -z -u $((52 * MiB + 131072)) 64k" \
    -c "write -P 0x55 $((64 * MiB - 512)) 512" \
    -c "flush" "$U" 2>&1) || fail "qemu-io writes through vmad: $out"

check_patterns() {   # qemu-io options and image: what was written is there
    local out
    out=$(qemu-io "$@" \
        -c "read -P 0 0 1M" \
        -c "read -P 0x11 1M 1M" \
        -c "read -P 0 2M 2M" \
        -c "read -P 0x22 4M 40M" \
        -c "read -P 0 44M 6M" \
        -c "read -P 0x33 50M 64k" \
        -c "read -P 0 52M 64k" \
        -c "read -P 0x44 $((52 * MiB + 65536)) 64k" \
        -c "read -P 0 $((52 * MiB + 131072)) 64k" \
        -c "read -P 0x44 $((52 * MiB + 196608)) $((MiB - 196608))" \
        -c "read -P 0 53M $((11 * MiB - 512))" \
        -c "read -P 0x55 $((64 * MiB - 512)) 512" 2>&1) || { echo "$out"; return 1; }
}
check_patterns -f raw "$U" || fail "read back through vmad"

# block status: the qcow2 image's unallocated clusters are holes, written ones data
map=$(nbdinfo --map "$U") || fail "nbdinfo --map"
py "$map" <<'EOF' || fail "block status through the nbd driver: $map"
import sys
MiB = 1 << 20
ext = []
for line in sys.argv[1].splitlines():
    off, length, typ = line.split()[:3]
    ext.append((int(off), int(length), int(typ)))
def kind(off):
    for o, l, t in ext:
        if o <= off < o + l:
            return t
    raise SystemExit("offset %d not mapped" % off)
assert kind(0) & 2, "unwritten 0-1M not reported as zero"
assert kind(1 * MiB) == 0, "prefilled 1M not data"
assert kind(20 * MiB) == 0, "written 20M not data"
assert kind(46 * MiB) & 2, "unwritten 46M not reported as zero"
EOF

# a second client of vmad's export while the first writes: many requests in flight
out=$(qemu-img compare -f raw -F raw "$U" "$U" 2>&1) || fail "compare export with itself: $out"

quit_vmad
kill $QSD_PID && wait $QSD_PID 2>/dev/null
forget_pid $QSD_PID
check_patterns -f qcow2 "$T/a.qcow2" || fail "the qcow2 image does not hold what vmad wrote"

# qemu-nbd on 127.0.0.1, read-only: writable open refused, read-only=on works
# qemu-nbd has no "pick a free port": try a few
PORT=
for p in 10809 20809 30809 40809 50809; do
    qemu-nbd --read-only -f qcow2 -b 127.0.0.1 -p $p -x ro -e 4 --persistent "$T/a.qcow2" \
        >"$T/qnbd.log" 2>&1 &
    QNBD_PID=$!
    cleanup_pid $QNBD_PID
    for _ in $(seq 50); do
        if nbdinfo --can connect "nbd://127.0.0.1:$p/ro" 2>/dev/null; then
            PORT=$p
            break 2
        fi
        kill -0 $QNBD_PID 2>/dev/null || break
        sleep 0.1
    done
    kill $QNBD_PID 2>/dev/null
    wait $QNBD_PID 2>/dev/null
    forget_pid $QNBD_PID
done
[ -n "$PORT" ] || skip "SKIP: no free TCP port for qemu-nbd among the ones tried"

inet="driver=nbd,node-name=d1,server.type=inet,server.host=127.0.0.1,server.port=$PORT"
expect_startup_error "--blockdev $inet,export=ro: open d1: nbd://127.0.0.1:$PORT/ro: the export is read-only \(open the node with read-only=on\)" \
    --blockdev "$inet,export=ro"
expect_startup_error "--blockdev $inet,export=nope: open d1: nbd://127.0.0.1:$PORT/nope: .*" \
    --blockdev "$inet,export=nope"
expect_startup_error "--blockdev driver=nbd,node-name=d2,server.type=unix,server.path=$T/none.sock: open d2: nbd\+unix:///\?socket=$T/none.sock: .*No such file or directory" \
    --blockdev "driver=nbd,node-name=d2,server.type=unix,server.path=$T/none.sock"
expect_startup_error -F "--blockdev driver=nbd,node-name=d3,server.type=unix: Parameter 'server.path' is missing" \
    --blockdev "driver=nbd,node-name=d3,server.type=unix"

start_vmad --blockdev "$inet,export=ro,read-only=on" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd2.sock" \
    --export "nbd,id=e1,node-name=d1"
check_patterns -r -f raw "nbd+unix:///d1?socket=$T/nbd2.sock" || fail "read over inet"
qemu-io -f raw -c "write 0 4k" "nbd+unix:///d1?socket=$T/nbd2.sock" >/dev/null 2>&1 &&
    fail "a write to a read-only nbd node succeeded"
quit_vmad
check_log
