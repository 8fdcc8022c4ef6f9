#!/usr/bin/env bash
# Persistent bitmaps on a Ceph RBD disk (one-node cluster from tests/functional/ceph.bash;
# the image has Ceph's default features, exclusive-lock included). The mark of the image
# is a snapshot vmad takes at the clean close (vmabackup-bitmap-*) and removes once the
# disk is open for writing again:
# * writes over NBD, quit: the snapshot exists; restart: the bitmap is back with the same
#   count, the snapshot is gone, the next backup is an incremental of exactly the written
#   clusters;
# * SIGTERM, then writes to the image through QEMU's rbd driver while vmad is down:
#   restart finds them (rbd diff since the snapshot) and adds exactly their clusters to
#   the bitmap; the incremental holds them and the online writes;
# * kill -9: inconsistent (the state file was in use);
# * the snapshot removed while vmad is down: inconsistent, with the reason in the log;
# * the last persistent bitmap removed: after quit no snapshot and no state file is left.
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-io
requires_qemu_rbd

ceph_start
rbd_cli create --size 64M bm || fail "rbd create"
qemu-io -f raw -c "write -P 0x42 0 64M" "$(rbd_uri bm)" >/dev/null || fail "fill the image"
mkdir "$T/state"

run() {
    start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
        --blockdev "driver=rbd,node-name=drive-scsi0,pool=$CEPH_POOL,image=bm,conf=$CEPH_CONF" \
        --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
}

# our snapshots of the image, one name a line
marks() {
    rbd_cli snap ls --format json bm | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["name"].startswith("vmabackup-bitmap-"):
        print(s["name"])'
}

step() {
    STEP=$1 py "$T" <<'EOF' || fail "step $1"
import os, sys
from bitmaplib import *
T = sys.argv[1]
STEP, q, uri, backup = step_session(T)

def incremental(want):
    u, cfg, devs, cl = backup()
    info = chain_info(cfg)
    assert info and info["base"] == uuid_str(open(T + "/last-uuid").read()), info
    assert sorted(cl["drive-scsi0"]) == want, sorted(cl["drive-scsi0"])
    open(T + "/last-uuid", "w").write(u)

def p0():
    return bitmaps(q, "drive-scsi0")["p0"]

if STEP == "first":
    q.ok("block-dirty-bitmap-add", {"node": "drive-scsi0", "name": "p0", "persistent": True})
    u, cfg, devs, cl = backup()
    assert chain_info(cfg) is None            # the first use: a full backup
    open(T + "/last-uuid", "w").write(u)
    qemu_io(uri, "write -P 7 65536 4096", "write -P 8 1048576 131072")
    assert p0()["count"] == 3 * 65536, p0()
elif STEP == "after-quit":
    b = p0()
    assert b["persistent"] and b["recording"] and "inconsistent" not in b, b
    assert b["count"] == 3 * 65536, b
    incremental([1, 16, 17])
    qemu_io(uri, "write -P 9 2097152 4096")   # cluster 32, before the SIGTERM
elif STEP == "after-offline-writes":
    b = p0()
    assert "inconsistent" not in b and b["recording"], b
    assert b["count"] == 4 * 65536, b         # 32 online, 128, 320 and 321 offline
    incremental([32, 128, 320, 321])
elif STEP == "inconsistent":
    b = p0()
    assert b.get("inconsistent") is True and b["count"] == 0 and not b["recording"], b
    err = backup()
    assert isinstance(err, str) and "inconsistent" in err, err
    q.ok("block-dirty-bitmap-clear", {"node": "drive-scsi0", "name": "p0"})
    qemu_io(uri, "write -P 3 0 4096")
    assert p0()["count"] == 65536, p0()
elif STEP == "remove":
    q.ok("block-dirty-bitmap-remove", {"node": "drive-scsi0", "name": "p0"})
print("step", STEP, "ok")
EOF
}

run; step first
[ -z "$(marks)" ] || fail "a snapshot while the disk is open: $(marks)"
quit_vmad
[ "$(marks | wc -l)" = 1 ] || fail "after quit: snapshots '$(marks)', want one"
ls "$T"/state/*.bitmaps >/dev/null || fail "no state file"

run; step after-quit
[ -z "$(marks)" ] || fail "the snapshot is still there with the disk open: $(marks)"
stop_vmad TERM
[ "$(marks | wc -l)" = 1 ] || fail "after SIGTERM: snapshots '$(marks)', want one"
qemu-io -f raw -c "write -P 0x11 8M 4k" -c "write -P 0x22 20M 100k" "$(rbd_uri bm)" \
    >/dev/null || fail "offline qemu-io"

run; step after-offline-writes
grep -q "written while vmad was not running" "$VMAD_LOG" ||
    fail "no message about the offline writes"
kill -9 "$VMAD_PID"; wait "$VMAD_PID" 2>/dev/null; forget_pid "$VMAD_PID"; VMAD_PID=

run; step inconsistent
grep -q "did not stop cleanly" "$VMAD_LOG" || fail "no warning after kill -9"
quit_vmad 60   # the snapshot waits for the dead client's exclusive lock (watch timeout)
m=$(marks)
[ "$(echo "$m" | wc -l)" = 1 ] && [ -n "$m" ] || fail "after quit: snapshots '$m', want one"
rbd_cli snap rm "bm@$m" >/dev/null 2>&1 || fail "rbd snap rm $m"

: >"$VMAD_LOG"
run
STEP=x py "$T" <<'EOF' || fail "the bitmap after its snapshot was removed"
import sys
from qmp import QMP
from bitmaplib import bitmaps
q = QMP(sys.argv[1] + "/qmp.sock", timeout=60)
q.negotiate()
b = bitmaps(q, "drive-scsi0")["p0"]
assert b.get("inconsistent") is True, b
EOF
grep -q "is gone" "$VMAD_LOG" || fail "no warning naming the removed snapshot"
step remove
quit_vmad
[ -z "$(marks)" ] || fail "snapshots left after the last persistent bitmap was removed: $(marks)"
! ls "$T"/state/*.bitmaps >/dev/null 2>&1 || fail "a state file is left"
echo "PASS (ceph up in $CEPH_UP_SECS s)"
