#!/usr/bin/env bash
# A negative speed means unlimited: the backup is quick.
. "$(dirname "$0")/backup-status.bash"

py "$T" <<'EOF' || fail "a negative speed"
import json, os, subprocess, sys, time
from qmp import expect_error
from pitlib import wait_backup
from backupstatus import Status

s = Status(sys.argv[1])
q, T, VMA = s.q, s.T, s.vma
DISKS, SIZES, TOTAL = s.disks, s.sizes, s.total
vma_uuid = s.vma_uuid

out3 = T + "/out/c.vma"
t0 = time.monotonic()
q.ok("backup", {"backup-file": out3, "speed": -5})
st3 = wait_backup(q)
assert st3["status"] == "done" and time.monotonic() - t0 < 10, st3
q.close()
EOF
quit_vmad
echo PASS
