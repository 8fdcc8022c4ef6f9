#!/usr/bin/env bash
# A chain of a full and four incremental backups (persistent bitmap, bitmap-mode
# on-success) of a Ceph RBD disk (default features: exclusive-lock, object-map,
# fast-diff) and a file disk, on a one-node cluster (tests/functional/ceph.bash). Random
# writes, zeroes and trims go through the NBD export (qemu-io) between the backups and
# during each of them. Between the third and the fourth backup vmad is stopped cleanly
# and the RBD image is written through QEMU's rbd driver while vmad is down: the
# restarted vmad adds those writes to the bitmap (rbd diff since its snapshot), so the
# chain goes on without a full backup. Each point is restored with `vma extract --base
# ...` and compared (cmp) with the disks as read at the backup's instant; each delta
# holds only a fraction of the disks.
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-io qemu-img cmp
requires_qemu_rbd
[ -x "$VMA" ] || fail "vma not built"
MiB=1048576

ceph_start
rbd_cli create --size 64M inc || fail "rbd create"
make_random "$T/seed.raw" 24
qemu-img convert -n -f raw -O raw "$T/seed.raw" "$(rbd_uri inc)" || fail "fill the image"
python3 -c "import os,sys; open(sys.argv[1],'wb').write(os.urandom(3*65536+4096+1024))" "$T/b.raw"
export RBD_INC=$(rbd_uri inc)

run() {
    start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
        --blockdev "driver=rbd,node-name=drive-scsi0,pool=$CEPH_POOL,image=inc,conf=$CEPH_CONF" \
        --blockdev "driver=file,node-name=drive-scsi1,filename=$T/b.raw" \
        --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
        --export "nbd,id=e1,node-name=drive-scsi1,writable=on"
}

# chain FIRST LAST: backups FIRST..LAST of the chain; the disks at each instant are
# saved as $T/pK-NODE.raw
chain() {
    FIRST=$1 LAST=$2 py "$T" <<'EOF' || fail "backups $1..$2"
import os, random, shutil, subprocess, sys
from qmp import QMP
from bitmaplib import *

T = sys.argv[1]
FIRST, LAST = int(os.environ["FIRST"]), int(os.environ["LAST"])
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
SIZES = {"drive-scsi0": 64 << 20, "drive-scsi1": os.path.getsize(T + "/b.raw")}
uri = lambda n: "nbd+unix:///%s?socket=%s/nbd.sock" % (n, T)
rng = random.Random(20 + FIRST)

def save_instant(k):
    # nothing writes now: the disks as they are at the instant of backup k
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", os.environ["RBD_INC"],
                    "%s/p%d-drive-scsi0.raw" % (T, k)], check=True)
    shutil.copyfile(T + "/b.raw", "%s/p%d-drive-scsi1.raw" % (T, k))

if FIRST == 0:
    for n in SIZES:
        q.ok("block-dirty-bitmap-add", {"node": n, "name": "b0", "persistent": True})
else:
    for n in SIZES:
        bm = bitmaps(q, n)["b0"]
        assert "inconsistent" not in bm and bm["recording"] and bm["count"] > 0, (n, bm)
for k in range(FIRST, LAST + 1):
    if k > FIRST:
        for n in SIZES:
            qemu_io(uri(n), *random_io(rng, SIZES[n]))
    save_instant(k)
    args = {"backup-file": "%s/b%d.vma" % (T, k), "bitmap": "b0"}
    if k > 0:
        args["speed"] = 8 << 20
    uuid = start_backup(q, args)
    for n in SIZES:                     # not in this archive: in the next one
        qemu_io(uri(n), *random_io(rng, SIZES[n], 4))
    st = wait_backup(q)
    assert st["status"] == "done" and st["total"] == sum(SIZES.values()), st
    u, cfg, devs, cl = read_vma("%s/b%d.vma" % (T, k))
    assert uuid_str(u) == uuid
    info = chain_info(cfg)
    if k == 0:
        assert info is None and st["reused"] == 0, (info, st)
    else:
        assert info and info["kind"] == "incremental", info
        assert info["base"] == uuid_str(open(T + "/last-uuid").read()), info
        stored = sum(len(c) for c in cl.values()) * CLUSTER
        assert 0 < stored < sum(SIZES.values()) // 4, "delta %d stores %d bytes" % (k, stored)
    open(T + "/last-uuid", "w").write(u)
    print("backup %d: %s, %d clusters" % (k, info["kind"] if info else "full",
                                          sum(len(c) for c in cl.values())))
EOF
}

mkdir "$T/state"
run
chain 0 2
quit_vmad
# written while vmad is down, through QEMU's rbd driver: one partial object, one range
# across an object boundary, and zeroes
qemu-io -f raw -c "write -P 0x11 $((5 * MiB + 512)) 3000" \
    -c "write -P 0x22 $((8 * MiB - 20480)) 65536" -c "write -z $((40 * MiB)) 131072" \
    "$RBD_INC" >/dev/null || fail "offline writes"
run
grep -q "written while vmad was not running" "$VMAD_LOG" || fail "the offline writes were not found"
chain 3 4
quit_vmad

bases=()
for k in 0 1 2 3 4; do
    "$VMA" extract "${bases[@]}" "$T/b$k.vma" "$T/x$k" >/dev/null || fail "vma extract of point $k"
    for n in drive-scsi0 drive-scsi1; do
        cmp "$T/x$k/disk-$n.raw" "$T/p$k-$n.raw" || fail "point $k: $n differs from its instant"
    done
    bases+=(--base "$T/b$k.vma")
    rm -rf "$T/x$k"
done
echo "PASS (ceph up in $CEPH_UP_SECS s)"
