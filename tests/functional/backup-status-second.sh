#!/usr/bin/env bash
# A backup without devlist takes every writable disk, not the read-only one, and gets a
# new uuid; a second backup is refused while one runs and does not disturb it.
. "$(dirname "$0")/backup-status.bash"

py "$T" <<'EOF' || fail "a second backup while one runs"
import json, os, subprocess, sys, time
from qmp import expect_error
from pitlib import wait_backup
from backupstatus import Status

s = Status(sys.argv[1])
q, T, VMA = s.q, s.T, s.vma
DISKS, SIZES, TOTAL = s.disks, s.sizes, s.total
vma_uuid = s.vma_uuid

# a finished backup
out = T + "/out/a.vma"
uuid = q.ok("backup", {"backup-file": out})["UUID"]
st = wait_backup(q)
assert st["status"] == "done" and st["uuid"] == uuid, st

# the default devlist: every writable disk; a second backup is refused meanwhile
out2 = T + "/out/b.vma"
uuid2 = q.ok("backup", {"backup-file": out2, "speed": 2 << 20})["UUID"]
assert uuid2 != uuid
st2 = q.ok("query-backup")
assert st2["status"] == "active" and st2["total"] == TOTAL and st2["uuid"] == uuid2, st2
expect_error(q.cmd("backup", {"backup-file": T + "/out/c.vma", "speed": -1}),
             "GenericError", "previous backup not finished")
assert not os.path.exists(T + "/out/c.vma")
st2b = q.ok("query-backup")
assert st2b["status"] == "active" and st2b["uuid"] == uuid2, st2b
st2 = wait_backup(q)
assert st2["status"] == "done" and st2["uuid"] == uuid2, st2
assert st2["zero-bytes"] == s.zero_bytes() == st["zero-bytes"], (st2, st)
assert vma_uuid(out2) == uuid2
q.close()
EOF
quit_vmad
echo PASS
