#!/usr/bin/env bash
# Live restore onto a Ceph RBD image (one-node cluster from tests/functional/ceph.bash): a
# vma node over an archive's disk is the backing of an alloc-track node whose target is
# an rbd node over an image full of old data (0xff). While block-stream copies
# (speed-limited), ranges of the NBD export read as the archived disk, and qemu-io
# writes and zeroes at random through the export (no discards: librbd may skip a discard
# of part of an object). vmad is killed (-9) during the stream and started again: while
# the resumed stream runs, the whole export reads as the archive plus the writes
# (qemu-img compare; copy-on-read fills the target as it goes). After
# BLOCK_JOB_COMPLETED the image, read with `rbd export`, equals the disk `vma extract`
# restores plus the writes (cmp), also where the archive holds zeros over the old data.
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-io qemu-img cmp
requires_qemu_rbd
[ -x "$VMA" ] || fail "$VMA not built"
MiB=1048576

make_random "$T/disk.raw" 32
fallocate -p -o $((4 * MiB)) -l $((6 * MiB)) "$T/disk.raw" || fail "punch a hole"
"$VMA" create "$T/a.vma" drive-scsi0="$T/disk.raw" >/dev/null || fail "vma create"
"$VMA" extract "$T/a.vma" "$T/x" >/dev/null || fail "vma extract"
cmp "$T/x/disk-drive-scsi0.raw" "$T/disk.raw" || fail "the extracted disk differs from its source"

ceph_start
# layering only: the kill -9 below would leave an exclusive lock the next writer waits for
rbd_cli create --size 32M --image-feature layering tgt || fail "rbd create"
qemu-io -f raw -c "write -P 0xff 0 32M" "$(rbd_uri tgt)" >/dev/null || fail "fill the target"
mkdir "$T/state"

run() {
    start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
        --blockdev "driver=vma,node-name=arch0,filename=$T/a.vma,device=drive-scsi0" \
        --blockdev "driver=rbd,node-name=tgt0,pool=$CEPH_POOL,image=tgt,conf=$CEPH_CONF" \
        --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0" \
        --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
}

# phase PHASE: first (compare during the stream, writes, kill) or resume (to the end)
phase() {
    PHASE=$1 py "$T" <<'PYEOF' || fail "live restore onto rbd ($1)"
import os, pickle, random, subprocess, sys, time
from qmp import QMP
from restorelib import Model, qemu_io, read_range, job_gone

T = sys.argv[1]
PHASE = os.environ["PHASE"]
URI = "nbd+unix:///drive-scsi0?socket=%s/nbd.sock" % T
SIZE = 32 << 20
SPEED = 2 << 20
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()

def compare(want):
    p = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", URI, want],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr

if PHASE == "first":
    m = Model(T + "/x/disk-drive-scsi0.raw")
    rng = random.Random(5)
    q.ok("block-stream", {"job-id": "restore0", "device": "drive-scsi0", "speed": SPEED})
    for off in (0, 3 << 20, 9 << 20, 20 << 20, SIZE - (1 << 20)):
        assert read_range(URI, off, 1 << 20, T + "/part") == bytes(m.data[off:off + (1 << 20)]), off
    jobs = q.ok("query-jobs")
    assert len(jobs) == 1 and jobs[0]["status"] == "running", jobs
    assert jobs[0]["current-progress"] < SIZE, jobs
    for _ in range(3):
        qemu_io(URI, m.random_ops(rng, 12, discard=False))
    jobs = q.ok("query-jobs")
    assert jobs and jobs[0]["current-progress"] < SIZE, "the stream ended too early: %r" % jobs
    time.sleep(1.2)                              # the stream's record is written each second
    pickle.dump(m.data, open(T + "/model", "wb"))
    print("killed at %d of %d bytes" % (q.ok("query-jobs")[0]["current-progress"], SIZE))
else:
    m = Model(T + "/x/disk-drive-scsi0.raw")
    m.data = pickle.load(open(T + "/model", "rb"))
    rng = random.Random(6)
    q.ok("block-stream", {"job-id": "restore1", "device": "drive-scsi0", "speed": SPEED})
    # the whole disk while the resumed restore runs: the archive plus the writes
    compare(T + "/model.raw")
    qemu_io(URI, m.random_ops(rng, 12, discard=False))
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=60)
    d = ev["data"]
    assert d["type"] == "stream" and d["device"] == "restore1" and "error" not in d, d
    st = job_gone(q, "restore1")
    assert st[-2:] == ["concluded", "null"], st
    q.ok("blockdev-del", {"node-name": "arch0"})
    m.save(T + "/want.raw")
    compare(T + "/want.raw")
PYEOF
}

run
phase first
kill -9 "$VMAD_PID"; wait "$VMAD_PID" 2>/dev/null; forget_pid "$VMAD_PID"; VMAD_PID=
python3 -c "import pickle,sys; open(sys.argv[2],'wb').write(pickle.load(open(sys.argv[1],'rb')))" \
    "$T/model" "$T/model.raw"
run
phase resume
quit_vmad
rbd_cli export tgt "$T/tgt.raw" >/dev/null 2>&1 || fail "rbd export"
cmp "$T/tgt.raw" "$T/want.raw" || fail "the RBD image differs from the archive plus the writes"
echo "PASS (ceph up in $CEPH_UP_SECS s)"
