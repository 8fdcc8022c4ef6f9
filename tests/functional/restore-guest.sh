#!/usr/bin/env bash
# Live restore with a real guest: QEMU (TCG) boots from a disk that is being restored.
# The source holds the guest pattern (seed 31) in three regions; the target is empty; the
# alloc-track export is served while block-stream copies slowly. The guest first checks
# the source's pattern through the export (reads of clusters not restored yet come from
# the backing), then a second boot writes and checks its own pattern (seed 32) in other
# regions while the copy still runs. The stream completes; the target file holds the
# guest's writes and, everywhere else, the source (guest-check.py pattern --orig).
. "$(dirname "$0")/guest.bash"
requires python3
[ -x "$VMAD" ] || fail "$VMAD not built"

guest_prepare
SIZE=$((64 << 20))
R1=0:1M,30M:2M,$((SIZE - (1 << 20))):1M
R2=8M:2M,40M:1M
truncate -s 64M "$T/src.raw"
python3 - "$T/src.raw" <<'PYEOF' || fail "prefill"
import random, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4 << 20)
    f.write(random.Random(31).randbytes(20 << 20))
PYEOF
python3 "$GUEST_CHECK" fill --seed 31 --disk 0 --regions "$R1" "$T/src.raw" || fail "fill pattern"
cp "$T/src.raw" "$T/src.orig"
truncate -s 64M "$T/tgt.raw"
mkdir "$T/state"

start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=arch0,filename=$T/src.raw,read-only=on" \
    --blockdev "driver=file,node-name=tgt0,filename=$T/tgt.raw" \
    --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"

py "$T" start <<'PYEOF' || fail "start the stream"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()
q.ok("block-stream", {"job-id": "restore0", "device": "drive-scsi0", "speed": 1 << 19})
PYEOF

guest_boot "$T/nbd.sock" drive-scsi0 verify seed=31 regions="$R1" || fail "guest_boot verify"
res=$(guest_wait "$GUEST_PID")
[ "$res" = "GUEST-RESULT: ok" ] || fail "the guest's check of the source: $res"
guest_boot "$T/nbd.sock" drive-scsi0 write-verify seed=32 regions="$R2" || fail "guest_boot write"
res=$(guest_wait "$GUEST_PID")
[ "$res" = "GUEST-RESULT: ok" ] || fail "the guest's writes: $res"

py "$T" <<'PYEOF' || fail "finish the stream"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock", timeout=120)
q.negotiate()
jobs = q.ok("query-jobs")
assert jobs and jobs[0]["status"] == "running", "the stream ended before the guest ran: %r" % jobs
q.ok("block-job-set-speed", {"device": "restore0", "speed": 0})
ev = q.event("BLOCK_JOB_COMPLETED", timeout=120)
assert "error" not in ev["data"] and ev["data"]["offset"] == ev["data"]["len"], ev
q.ok("blockdev-del", {"node-name": "arch0"})
PYEOF
quit_vmad
python3 "$GUEST_CHECK" pattern "$T/tgt.raw" --seed 32 --disk 0 --regions "$R2" \
    --orig "$T/src.orig" || fail "target: not the source plus the guest's writes"
echo "ok: a guest ran on a disk while it was restored"
