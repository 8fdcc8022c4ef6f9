#!/usr/bin/env bash
# A chain of a full and six incremental backups (bitmap-mode on-success) of two disks of
# odd sizes, with random overlapping writes, zeroes and trims through the NBD export
# (qemu-io) between the backups and during each of them. Every archive is applied to the
# state of its base (a small VMA reader in bitmaplib.py; each delta names its base's
# uuid): each point is bit-exact the disks at its backup's instant, each delta holds only
# changed clusters, and the writes made during a backup land in the next one.
# MODE=never (incremental-differential.sh) runs the same with differentials.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io
MODE=${MODE:-on-success}

python3 - "$T" <<'EOF' || fail "creating images"
import os, sys
for name, size in (("a", 5 * 1048576 + 12345 * 512 + 512), ("b", 3 * 65536 + 4096 + 1024)):
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

MODE=$MODE py "$T" <<'EOF' || fail "incremental chain ($MODE)"
import os, random, sys, threading
from qmp import QMP
from bitmaplib import *

T = sys.argv[1]
MODE = os.environ["MODE"]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
PATHS = {"drive-scsi0": T + "/a.raw", "drive-scsi1": T + "/b.raw"}
SIZES = {n: os.path.getsize(p) for n, p in PATHS.items()}
uri = lambda n: "nbd+unix:///%s?socket=%s/nbd.sock" % (n, T)
rng = random.Random(int(os.environ.get("SEED", "10")))

for n in PATHS:
    q.ok("block-dirty-bitmap-add", {"node": n, "name": "b0"})

states, uuids = [], []
for k in range(7):
    if k > 0:
        for n in PATHS:
            qemu_io(uri(n), *random_io(rng, SIZES[n]))
    expect = snapshot(PATHS)            # no writer runs now: the state at the instant
    out = "%s/b%d.vma" % (T, k)
    args = {"backup-file": out, "bitmap": "b0", "speed": 4 << 20}
    if MODE == "never":
        args["bitmap-mode"] = "never"
    uuid = start_backup(q, args)
    # writes while the backup runs: not in this archive, in the next
    for n in PATHS:
        qemu_io(uri(n), *random_io(rng, SIZES[n], 4))
    st = wait_backup(q)
    assert st["status"] == "done", st
    assert st["total"] == sum(SIZES.values()), st
    assert st["dirty"] + st["reused"] == st["total"], st
    if k == 0:
        assert st["reused"] == 0, st
    base = None if k == 0 else (uuids[-1] if MODE == "on-success" else uuids[0])
    state, got_uuid, info, ncl = apply_archive(None if k == 0 else states[-1 if MODE == "on-success" else 0], out, base)
    assert uuid_str(got_uuid) == uuid
    for n in PATHS:
        assert bytes(state[n]) == expect[n], "backup %d: %s differs from its instant" % (k, n)
    if k > 0:
        assert info["kind"] == ("incremental" if MODE == "on-success" else "differential"), info
        assert info["bitmap"] == "b0", info
        stored = sum(ncl.values()) * CLUSTER
        limit = sum(SIZES.values()) // (2 if MODE == "on-success" else 1)
        assert stored < limit, "delta %d stores %d bytes" % (k, stored)
        if MODE == "never" and k > 1:
            assert stored >= prev_stored, "a differential shrank"
        prev_stored = stored
        assert stored - 2 * CLUSTER <= st["dirty"] <= stored, (st, stored)
    states.append(state)
    uuids.append(got_uuid)
    bm = bitmaps(q, "drive-scsi0")["b0"]
    assert not bm["busy"] and bm["recording"], bm
print("chain of %d archives ok (%s)" % (len(uuids), MODE))
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exit $VMAD_RC"
check_log
echo "PASS incremental chain ($MODE)"
