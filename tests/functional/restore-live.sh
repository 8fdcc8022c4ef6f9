#!/usr/bin/env bash
# Live restore with a file node as backing (the graph of the issue, any node works as
# backing): the alloc-track export serves the source's data before anything is copied;
# block-stream (speed-limited) runs while qemu-io writes, write-zeroes and discards at
# random over the disk; query-jobs shows the stream job with progress; JOB_STATUS_CHANGE
# and BLOCK_JOB_COMPLETED come in QEMU's order with QEMU's fields; afterwards the target
# file equals the source plus the writes (cmp), the backing node can be deleted and its
# file removed, and the disk is still served.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io qemu-img cmp

SIZE_MIB=48
make_random "$T/src.raw" $SIZE_MIB
# a hole in the source: 8 MiB of zeros the stream need not copy
fallocate -p -o $((16 << 20)) -l $((8 << 20)) "$T/src.raw" || fail "punch a hole"
truncate -s ${SIZE_MIB}M "$T/tgt.raw"
cp "$T/src.raw" "$T/src.orig"
mkdir "$T/state"

start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=arch0,filename=$T/src.raw,read-only=on" \
    --blockdev "driver=file,node-name=tgt0,filename=$T/tgt.raw" \
    --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"

py "$T" <<'PYEOF' || fail "live restore"
import os, random, subprocess, sys, time
from qmp import QMP, expect_error
from restorelib import Model, qemu_io, read_range, job_gone

T = sys.argv[1]
URI = "nbd+unix:///drive-scsi0?socket=%s/nbd.sock" % T
SIZE = 48 << 20
SPEED = 12 << 20
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
m = Model(T + "/src.orig")
rng = random.Random(11)

# usable at once: reads equal the source before any stream ran
for off in (0, 5 << 20, 17 << 20, SIZE - (1 << 20)):
    assert read_range(URI, off, 1 << 20, T + "/part") == bytes(m.data[off:off + (1 << 20)]), off
blk = [b for b in q.ok("query-block") if b["device"] == "drive-scsi0"][0]
assert blk["inserted"]["drv"] == "alloc-track", blk

# errors in QEMU's words
expect_error(q.cmd("block-stream", {"device": "nope"}), "GenericError",
             "Cannot find device='nope' nor node-name='nope'")
expect_error(q.cmd("block-stream", {"device": "drive-scsi0", "speed": -1}), "GenericError",
             "Parameter 'speed' expects a non-negative value")
expect_error(q.cmd("block-job-cancel", {"device": "restore0"}), "DeviceNotActive",
             "Block job 'restore0' not found")

q.ok("block-stream", {"job-id": "restore0", "device": "drive-scsi0", "speed": SPEED})
expect_error(q.cmd("block-stream", {"job-id": "other", "device": "drive-scsi0"}), "GenericError",
             "Node 'drive-scsi0' is busy: block device is in use by block job: stream")
expect_error(q.cmd("block-stream", {"job-id": "restore0", "device": "tgt0"}), "GenericError",
             "Job ID 'restore0' already in use")
expect_error(q.cmd("blockdev-del", {"node-name": "arch0"}), "GenericError")

jobs = q.ok("query-jobs")
assert len(jobs) == 1 and jobs[0]["id"] == "restore0" and jobs[0]["type"] == "stream", jobs
assert jobs[0]["status"] == "running" and jobs[0]["total-progress"] == SIZE, jobs
first = jobs[0]["current-progress"]
assert first < SIZE, jobs

# guest I/O while the stream runs
rounds = 0
while rounds < 8:
    jobs = q.ok("query-jobs")
    if not jobs:
        break
    qemu_io(URI, m.random_ops(rng, 25))
    rounds += 1
assert rounds >= 3, "the stream ended before the writes ran (%d rounds)" % rounds
later = q.ok("query-jobs")
if later:
    assert later[0]["current-progress"] >= first, (first, later)

ev = q.event("BLOCK_JOB_COMPLETED", timeout=60)
d = ev["data"]
assert d == {"type": "stream", "device": "restore0", "len": SIZE, "offset": SIZE,
             "speed": SPEED}, d
st = job_gone(q, "restore0")
assert q.ok("query-jobs") == []
assert st == ["created", "running", "waiting", "pending", "concluded", "null"], st

# the backing is unused: delete the node and its file; the disk is still served
q.ok("blockdev-del", {"node-name": "arch0"})
os.unlink(T + "/src.raw")
qemu_io(URI, m.random_ops(rng, 10))
m.save(T + "/want.raw")
p = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", URI, T + "/want.raw"],
                   capture_output=True, text=True)
assert p.returncode == 0, p.stdout + p.stderr

# nothing left to stream: a job that completes at once with len 0
q.ok("block-stream", {"device": "drive-scsi0"})
ev = q.event("BLOCK_JOB_COMPLETED", timeout=10)
assert ev["data"] == {"type": "stream", "device": "drive-scsi0", "len": 0, "offset": 0,
                      "speed": 0}, ev
PYEOF

quit_vmad
cmp "$T/tgt.raw" "$T/want.raw" || fail "the target differs from the source plus the writes"
echo "ok: live restore from a file node"
