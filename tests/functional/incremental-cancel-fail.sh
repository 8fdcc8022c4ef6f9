#!/usr/bin/env bash
# A cancelled and a failed incremental in the middle of a chain lose nothing: the bits
# they took are merged back with the writes made meanwhile, so the next successful
# incremental (based on the last successful archive) restores bit-exact; the bitmap is
# busy during a backup and refuses a second use and QMP changes.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io

python3 - "$T" <<'EOF' || fail "creating images"
import os, sys
for name, size in (("a", 4 * 1048576 + 3 * 512), ("b", 2 * 65536 + 777 * 512)):
    with open("%s/%s.raw" % (sys.argv[1], name), "wb") as f:
        f.write(os.urandom(size))
EOF
start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/b.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "cancelled and failed incrementals"
import os, random, sys, time
from qmp import QMP
from bitmaplib import *

T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
PATHS = {"drive-scsi0": T + "/a.raw", "drive-scsi1": T + "/b.raw"}
SIZES = {n: os.path.getsize(p) for n, p in PATHS.items()}
uri = lambda n: "nbd+unix:///%s?socket=%s/nbd.sock" % (n, T)
rng = random.Random(3)
for n in PATHS:
    q.ok("block-dirty-bitmap-add", {"node": n, "name": "inc"})

def io(k=10):
    for n in PATHS:
        qemu_io(uri(n), *random_io(rng, SIZES[n], k))

def good(out, base_state, base_uuid):
    expect = snapshot(PATHS)
    start_backup(q, {"backup-file": out, "bitmap": "inc"})
    io(3)
    st = wait_backup(q)
    assert st["status"] == "done", st
    state, u, info, _ = apply_archive(base_state, out, base_uuid)
    for n in PATHS:
        assert bytes(state[n]) == expect[n], (out, n)
    return state, u

state, u = good(T + "/full.vma", None, None)
io()
state, u = good(T + "/i1.vma", state, u)
io()
# cancelled: a slow backup, busy meanwhile
start_backup(q, {"backup-file": T + "/cancel.vma", "bitmap": "inc", "speed": 65536})
b = bitmaps(q, "drive-scsi0")["inc"]
assert b["busy"] and b["recording"], b
r = q.cmd("block-dirty-bitmap-clear", {"node": "drive-scsi0", "name": "inc"})
assert r["error"]["desc"] == "Bitmap 'inc' is currently in use by another operation and cannot be used", r
io(4)
q.ok("backup-cancel")
st = wait_backup(q)
assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
assert not os.path.exists(T + "/cancel.vma")
assert not bitmaps(q, "drive-scsi0")["inc"]["busy"]
io()
# failed: the target command fails
start_backup(q, {"backup-file": "exec:head -c 20000 >/dev/null; exit 3", "bitmap": "inc"})
io(4)
st = wait_backup(q)
assert st["status"] == "error", st
io()
state, u = good(T + "/i2.vma", state, u)
io()
state, u = good(T + "/i3.vma", state, u)
print("chain complete after a cancel and a failure")
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exit $VMAD_RC"
check_log
echo "PASS incremental cancel/fail"
