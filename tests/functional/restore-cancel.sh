#!/usr/bin/env bash
# A cancelled block-stream keeps what it copied: block-job-cancel in the middle gives
# aborting, BLOCK_JOB_CANCELLED (offset < len), concluded, null; job-cancel of an unknown
# job is "Job not found"; block-job-set-speed lifts the limit of a second stream, which
# goes on from where the first stopped and completes; the target equals the source.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io cmp

make_random "$T/src.raw" 32
truncate -s 32M "$T/tgt.raw"
mkdir "$T/state"

start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=arch0,filename=$T/src.raw,read-only=on" \
    --blockdev "driver=file,node-name=tgt0,filename=$T/tgt.raw" \
    --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"

py "$T" <<'PYEOF' || fail "cancel and go on"
import sys, time
from qmp import QMP, expect_error
from restorelib import job_gone

T = sys.argv[1]
SIZE = 32 << 20
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
q.ok("block-stream", {"job-id": "r1", "device": "drive-scsi0", "speed": 4 << 20})
time.sleep(1.0)
expect_error(q.cmd("job-cancel", {"id": "nope"}), "GenericError", "Job not found")
q.ok("block-job-cancel", {"device": "r1"})
ev = q.event("BLOCK_JOB_CANCELLED", timeout=20)
d = ev["data"]
assert d["type"] == "stream" and d["device"] == "r1" and d["len"] == SIZE, d
assert 0 < d["offset"] < SIZE, d
st = job_gone(q, "r1")
assert q.ok("query-jobs") == []
assert st == ["created", "running", "aborting", "concluded", "null"], st

q.ok("block-stream", {"job-id": "r2", "device": "drive-scsi0", "speed": 1 << 20})
jobs = q.ok("query-jobs")
assert jobs[0]["current-progress"] >= d["offset"], (jobs, d)
q.ok("block-job-set-speed", {"device": "r2", "speed": 0})
ev = q.event("BLOCK_JOB_COMPLETED", timeout=30)
assert ev["data"] == {"type": "stream", "device": "r2", "len": SIZE, "offset": SIZE,
                      "speed": 0}, ev
PYEOF

quit_vmad
cmp "$T/src.raw" "$T/tgt.raw" || fail "target differs from the source"
echo "ok: a cancelled stream goes on"
