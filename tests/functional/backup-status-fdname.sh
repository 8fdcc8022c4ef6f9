#!/usr/bin/env bash
# query-backup names a passed descriptor as /dev/fdname/NAME; the archive read from the
# pipe has the backup's uuid.
. "$(dirname "$0")/backup-status.bash"

py "$T" <<'EOF' || fail "a backup to a passed descriptor"
import json, os, subprocess, sys, time
from qmp import expect_error
from pitlib import wait_backup
from backupstatus import Status

s = Status(sys.argv[1])
q, T, VMA = s.q, s.T, s.vma
DISKS, SIZES, TOTAL = s.disks, s.sizes, s.total
vma_uuid = s.vma_uuid

r_, w_ = os.pipe()
assert q.cmd("getfd", {"fdname": "pipe"}, fds=[w_]) == {"return": {}}
os.close(w_)
q.ok("backup", {"backup-file": "/dev/fdname/pipe", "devlist": "drive-scsi1"})
data = b""
while True:
    chunk = os.read(r_, 1 << 20)
    if not chunk:
        break
    data += chunk
os.close(r_)
st5 = wait_backup(q)
assert st5["status"] == "done" and st5["backup-file"] == "/dev/fdname/pipe", st5
assert st5["total"] == SIZES["drive-scsi1"], st5
with open(T + "/out/d.vma", "wb") as f:
    f.write(data)
assert vma_uuid(T + "/out/d.vma") == st5["uuid"]
q.close()
EOF
quit_vmad
echo PASS
