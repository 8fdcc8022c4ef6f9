#!/usr/bin/env bash
# An interrupted live restore resumes: vmad is killed with SIGKILL while block-stream runs
# and qemu-io writes, write-zeroes and discards at random; a restart with the same
# command line (and --state-dir) serves the restored clusters and the guest's writes from
# the target, a new block-stream starts from where the first stopped (progress > 0 at
# once) and completes, and the target equals the source plus every acknowledged write
# (cmp): no archive data was copied over a guest write.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io qemu-img cmp

make_random "$T/src.raw" 32
truncate -s 32M "$T/tgt.raw"
cp "$T/src.raw" "$T/src.orig"
mkdir "$T/state"
ARGS=(--monitor "$T/qmp.sock" --state-dir "$T/state"
    --blockdev "driver=file,node-name=arch0,filename=$T/src.raw,read-only=on"
    --blockdev "driver=file,node-name=tgt0,filename=$T/tgt.raw"
    --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0"
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock"
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on")

start_vmad "${ARGS[@]}"
py "$T" <<'PYEOF' || fail "first run"
import pickle, random, sys, time
from qmp import QMP
from restorelib import Model, qemu_io

T = sys.argv[1]
URI = "nbd+unix:///drive-scsi0?socket=%s/nbd.sock" % T
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
m = Model(T + "/src.orig")
rng = random.Random(5)
q.ok("block-stream", {"job-id": "restore0", "device": "drive-scsi0", "speed": 6 << 20})
for _ in range(6):
    qemu_io(URI, m.random_ops(rng, 20))
    time.sleep(0.3)
jobs = q.ok("query-jobs")
assert jobs and 0 < jobs[0]["current-progress"] < jobs[0]["total-progress"], jobs
m.save(T + "/want.raw")
PYEOF
kill -9 "$VMAD_PID"
wait "$VMAD_PID" 2>/dev/null
forget_pid "$VMAD_PID"
ls "$T/state"/drive-scsi0-*.alloc-track >/dev/null 2>&1 ||
    fail "no allocation record in the state directory"

: >"$T/vmad.log"
start_vmad "${ARGS[@]}"
py "$T" <<'PYEOF' || fail "resume"
import subprocess, sys
from qmp import QMP

T = sys.argv[1]
URI = "nbd+unix:///drive-scsi0?socket=%s/nbd.sock" % T
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
assert q.ok("query-jobs") == []
q.ok("block-stream", {"job-id": "restore0", "device": "drive-scsi0", "speed": 1 << 20})
jobs = q.ok("query-jobs")
assert jobs and jobs[0]["current-progress"] > 0, jobs   # resumed, not started over
q.ok("block-job-set-speed", {"device": "restore0", "speed": 0})
ev = q.event("BLOCK_JOB_COMPLETED", timeout=60)
assert "error" not in ev["data"] and ev["data"]["offset"] == ev["data"]["len"], ev
p = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", URI, T + "/want.raw"],
                   capture_output=True, text=True)
assert p.returncode == 0, p.stdout + p.stderr
PYEOF
quit_vmad
cmp "$T/tgt.raw" "$T/want.raw" || fail "the target lost a guest write or a cluster"
echo "ok: a killed live restore resumes exactly"
