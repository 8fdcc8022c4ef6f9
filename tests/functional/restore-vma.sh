#!/usr/bin/env bash
# Live restore from a VMA archive (the issue's command line): a vma node over one device
# of an uncompressed archive is the backing of an alloc-track node over an empty target.
# The export reads as the archived disk at once (qemu-img compare of ranges before any
# copy); block-stream runs while qemu-io writes at random; it completes with QEMU's
# events; the archive node is deleted and the archive file removed while the disk is
# still served; the target equals the archived disk plus the writes (cmp).
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io qemu-img cmp
[ -x "$VMA" ] || fail "$VMA not built"

make_random "$T/disk.raw" 24
fallocate -p -o $((4 << 20)) -l $((6 << 20)) "$T/disk.raw" || fail "punch a hole"
truncate -s $((24 << 20)) "$T/disk.raw"
"$VMA" create "$T/a.vma" drive-scsi0="$T/disk.raw" >/dev/null || fail "vma create"
truncate -s 24M "$T/tgt.raw"
mkdir "$T/state"

start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=vma,node-name=arch0,filename=$T/a.vma,device=drive-scsi0" \
    --blockdev "driver=file,node-name=tgt0,filename=$T/tgt.raw" \
    --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"

py "$T" <<'PYEOF' || fail "live restore from an archive"
import os, random, subprocess, sys
from qmp import QMP
from restorelib import Model, qemu_io, read_range, job_gone

T = sys.argv[1]
URI = "nbd+unix:///drive-scsi0?socket=%s/nbd.sock" % T
SIZE = 24 << 20
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
m = Model(T + "/disk.raw")
rng = random.Random(3)
for off in (0, 4 << 20, 9 << 20, SIZE - (1 << 20)):
    assert read_range(URI, off, 1 << 20, T + "/part") == bytes(m.data[off:off + (1 << 20)]), off
q.ok("block-stream", {"job-id": "restore-drive-scsi0", "device": "drive-scsi0",
                      "speed": 8 << 20})
jobs = q.ok("query-jobs")
assert jobs[0]["type"] == "stream" and jobs[0]["total-progress"] == SIZE, jobs
for _ in range(3):
    qemu_io(URI, m.random_ops(rng, 15))
ev = q.event("BLOCK_JOB_COMPLETED", timeout=60)
assert ev["data"] == {"type": "stream", "device": "restore-drive-scsi0", "len": SIZE,
                      "offset": SIZE, "speed": 8 << 20}, ev
st = job_gone(q, "restore-drive-scsi0")
assert st[-2:] == ["concluded", "null"], st
q.ok("blockdev-del", {"node-name": "arch0"})
os.unlink(T + "/a.vma")
qemu_io(URI, m.random_ops(rng, 5))
m.save(T + "/want.raw")
p = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", URI, T + "/want.raw"],
                   capture_output=True, text=True)
assert p.returncode == 0, p.stdout + p.stderr
PYEOF
quit_vmad
cmp "$T/tgt.raw" "$T/want.raw" || fail "the target differs from the archive plus the writes"
echo "ok: live restore from a VMA archive"
