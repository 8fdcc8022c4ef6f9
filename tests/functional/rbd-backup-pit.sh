#!/usr/bin/env bash
# Live backup of a Ceph RBD disk and a file disk together, point-in-time exact, on a
# one-node cluster this test starts (tests/functional/ceph.bash). tests/tools/pit-writer
# writes stamped data (writes, cluster-straddling and multi-cluster writes, FUA,
# write-zeroes) to both disks over NBD from before `backup` until after it finished;
# pit-check.py proves that the archive holds both disks as they were at one instant
# inside the backup command, and that every acknowledged write is on the disks (the RBD
# image read back through QEMU's rbd driver). Two backups: max-workers 1 with a speed
# limit, max-workers 8. (Trims are left out: librbd skips discards of partial objects,
# so a trimmed range need not read as zeros.)
# Then, with the writer stopped, a third backup also takes a sparse RBD disk (a 64 MiB
# image with three written objects); `vma extract` restores the archive to files and
# qemu-img compare finds each equal to its RBD image (rbd: names through QEMU's rbd
# driver) and to the file disk; the extracted sparse disk stays sparse.
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-img qemu-io
requires_qemu_rbd
PIT_WRITER=$BUILDDIR/tests/tools/pit-writer
[ -x "$VMA" ] || fail "vma not built"
[ -x "$PIT_WRITER" ] || fail "$PIT_WRITER not built (make test-build)"
export PIT_WRITER

ceph_start
MiB=1048576
# default features: exclusive-lock, object-map, fast-diff (block status per object)
rbd_cli create --size 16M live || fail "rbd create live"
rbd_cli create --size 64M sparse || fail "rbd create sparse"
qemu-io -f raw -c "write -P 0x5a 0 64k" -c "write -P 0x6b 20M 1M" -c "write -P 0x7c 63M 1M" \
    "$(rbd_uri sparse)" >/dev/null || fail "qemu-io sparse"
truncate -s $((4 * MiB + 4608)) "$T/d1.raw"
printf 'memory: 512\nname: rbdpit\n' >"$T/vm.conf"
mkdir "$T/out" "$T/x"
export RBD_LIVE=$(rbd_uri live) RBD_SPARSE=$(rbd_uri sparse)

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=rbd,node-name=drive-scsi0,pool=rbd,image=live,conf=$CEPH_CONF" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --blockdev "driver=rbd,node-name=drive-scsi2,pool=rbd,image=sparse,conf=$CEPH_CONF" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on"

py "$T" <<'EOF' || fail "point-in-time backups of an RBD disk and a file disk"
import os, subprocess, sys, time
from qmp import QMP
from pitlib import Writer, start_backup, wait_backup, pit_check

T = sys.argv[1]
SRCDIR, VMA, TOOL = os.environ["SRCDIR"], os.environ["VMA"], os.environ["PIT_WRITER"]
NAMES = ["drive-scsi0", "drive-scsi1"]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()

def uri(name):
    return "nbd+unix:///%s?socket=%s/nbd.sock" % (name, T)

def run(name, seed, args):
    t0 = time.monotonic()
    log = "%s/%s.log" % (T, name)
    out = "%s/out/%s.vma" % (T, name)
    w = Writer(TOOL, log, [uri(n) for n in NAMES], seed=seed, extra=["--no-trim"])
    try:
        w.prefill()
        w.start()
        w.wait_acked(200)
        sent, uuid, returned = start_backup(q, dict(args, **{
            "backup-file": out, "config-file": T + "/vm.conf",
            "devlist": ",".join(NAMES)}))
        acked1 = w.stats()[0]
        st = wait_backup(q)
        acked2 = w.stats()[0]
        w.wait_acked(acked2 + 200)
        res = w.stop()
    finally:
        w.kill()
    assert st["status"] == "done" and st["uuid"] == uuid, "%s: %r" % (name, st)
    q.events.clear()
    rc, msg = pit_check(SRCDIR, "pit", log, "--archive", out, "--vma", VMA,
                        "--sent", sent, "--returned", returned)
    if rc != 0:
        raise SystemExit("%s (seed %d): not a point-in-time copy: %s" % (name, seed, msg))
    f = dict(kv.split("=") for kv in msg.split()[2:])
    assert int(f["rewritten"]) > 0, "%s: nothing rewritten during the backup: %s" % (name, msg)
    # every acknowledged write is on the disks: the RBD image read by QEMU's driver
    img = "%s/%s-rbd.raw" % (T, name)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", os.environ["RBD_LIVE"],
                    img], check=True)
    rc, msg2 = pit_check(SRCDIR, "final", log, "--image=0=" + img,
                         "--image=1=%s/d1.raw" % T)
    if rc != 0:
        raise SystemExit("%s: an acknowledged write is not on the disks: %s" % (name, msg2))
    os.unlink(img)
    os.unlink(out)
    print("%-8s seed=%d ops=%d during-backup=%d rewritten=%s %.1fs"
          % (name, seed, res["ops"], acked2 - acked1, f["rewritten"], time.monotonic() - t0))

run("mw1", 11, {"max-workers": 1, "speed": 16 << 20})
run("mw8", 12, {"max-workers": 8})

# quiescent: all three disks, restored and compared below
sent, uuid, returned = start_backup(q, {"backup-file": T + "/out/all.vma",
                                        "config-file": T + "/vm.conf"})
st = wait_backup(q)
assert st["status"] == "done" and st["total"] == (16 << 20) + (4 << 20) + 4608 + (64 << 20), st
q.close()
EOF

"$VMA" verify "$T/out/all.vma" || fail "vma verify"
"$VMA" extract "$T/out/all.vma" "$T/x/r" || fail "vma extract"
for pair in "drive-scsi0:$RBD_LIVE" "drive-scsi2:$RBD_SPARSE" "drive-scsi1:$T/d1.raw"; do
    dev=${pair%%:*} src=${pair#*:}
    f=$T/x/r/disk-$dev.raw
    [ -f "$f" ] || fail "no $f after extract: $(ls "$T/x/r")"
    out=$(qemu-img compare -f raw -F raw "$f" "$src" 2>&1) ||
        fail "restored $dev differs from $src: $out"
done
is_sparse "$T/x/r/disk-drive-scsi2.raw" || fail "the restored sparse RBD disk is not sparse"
size=$(stat -c %s "$T/out/all.vma")
[ "$size" -lt $((30 * MiB)) ] || fail "archive of 16M + 4M + a sparse 64M is $size bytes"
quit_vmad
echo "PASS (ceph up in $CEPH_UP_SECS s)"
