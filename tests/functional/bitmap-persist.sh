#!/usr/bin/env bash
# Persistent bitmaps across restarts of vmad (--state-dir): a clean stop (quit, SIGTERM)
# keeps a bitmap usable and its chain going (the next backup is an incremental of the
# last one); after kill -9 it comes back inconsistent and an incremental from it is
# refused with the message saying why and what to do, until it is cleared (then a full
# backup); an image touched while vmad is down makes it inconsistent too; a damaged
# state file makes it inconsistent and vmad does not crash.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io

python3 -c "import os,sys; open(sys.argv[1],'wb').write(os.urandom(3*1048576+4096))" "$T/a.raw"

run() {
    start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
        --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
        --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
    wait_socket "$T/qmp.sock"
}

# step NAME: one python step against the running vmad
step() {
    STEP=$1 py "$T" <<'EOF' || fail "step $1"
import os, sys
from bitmaplib import *
T = sys.argv[1]
STEP, q, uri, backup = step_session(T)

if STEP == "first":
    q.ok("block-dirty-bitmap-add", {"node": "drive-scsi0", "name": "p0", "persistent": True})
    q.ok("block-dirty-bitmap-add", {"node": "drive-scsi0", "name": "t0"})
    u, cfg, devs, cl = backup()
    assert chain_info(cfg) is None            # the first use: a full backup
    open(T + "/last-uuid", "w").write(u)
    qemu_io(uri, "write -P 7 65536 4096", "write -P 8 1048576 131072")
elif STEP == "after-clean":
    bm = bitmaps(q, "drive-scsi0")
    assert "t0" not in bm, bm                 # not persistent: gone
    b = bm["p0"]
    assert b["persistent"] and b["recording"] and "inconsistent" not in b, b
    assert b["count"] == 3 * 65536, b
    u, cfg, devs, cl = backup()
    info = chain_info(cfg)
    assert info and info["base"] == uuid_str(open(T + "/last-uuid").read()), info
    assert sorted(cl["drive-scsi0"]) == [1, 16, 17], sorted(cl["drive-scsi0"])
    open(T + "/last-uuid", "w").write(u)
    # no write from here on: a kill -9 must leave the bitmap inconsistent all the same
elif STEP == "inconsistent":
    b = bitmaps(q, "drive-scsi0")["p0"]
    assert b.get("inconsistent") is True and b["count"] == 0 and not b["recording"], b
    err = backup()
    assert isinstance(err, str) and "inconsistent" in err and "block-dirty-bitmap-clear" in err, err
    q.ok("block-dirty-bitmap-clear", {"node": "drive-scsi0", "name": "p0"})
    b = bitmaps(q, "drive-scsi0")["p0"]
    assert "inconsistent" not in b and b["recording"], b
    u, cfg, devs, cl = backup()
    assert chain_info(cfg) is None            # cleared: a new full backup
    open(T + "/last-uuid", "w").write(u)
elif STEP == "consistent":
    b = bitmaps(q, "drive-scsi0")["p0"]
    assert "inconsistent" not in b, b
print("step", STEP, "ok")
EOF
}

run; step first
kill -TERM "$VMAD_PID"; wait_exit 20; [ "$VMAD_RC" = 0 ] || fail "SIGTERM exit $VMAD_RC"
run; step after-clean
kill -9 "$VMAD_PID"; wait "$VMAD_PID" 2>/dev/null; VMAD_PID=
run; step inconsistent
grep -q "did not stop cleanly" "$T/vmad.log" || fail "no warning after kill -9"
py "$T" <<'EOF' || fail quit
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock"); q.negotiate(); q.ok("quit")
EOF
wait_exit 20
run; step consistent
py "$T" <<'EOF' || fail quit
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock"); q.negotiate(); q.ok("quit")
EOF
wait_exit 20
# changed while vmad was down
sleep 0.01; touch "$T/a.raw"
run; step inconsistent
kill -INT "$VMAD_PID"; wait_exit 20; [ "$VMAD_RC" = 0 ] || fail "SIGINT exit $VMAD_RC"
# a damaged state file
f=$(ls "$T"/state/*.bitmaps) || fail "no state file"
printf 'garbage' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null
run; step inconsistent
grep -q "damaged" "$T/vmad.log" || fail "no warning about the damaged state file"
kill -TERM "$VMAD_PID"; wait_exit 20
echo "PASS bitmap persistence"
