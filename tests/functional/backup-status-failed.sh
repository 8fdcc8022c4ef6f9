#!/usr/bin/env bash
# query-backup of a failed backup (exec:exit 7): status error, the errmsg, end time,
# progress within the total; it stays put, and backup-cancel after the end changes
# nothing.
. "$(dirname "$0")/backup-status.bash"

py "$T" <<'EOF' || fail "the status of a failed backup"
import json, os, subprocess, sys, time
from qmp import expect_error
from pitlib import wait_backup
from backupstatus import Status

s = Status(sys.argv[1])
q, T, VMA = s.q, s.T, s.vma
DISKS, SIZES, TOTAL = s.disks, s.sizes, s.total
vma_uuid = s.vma_uuid

q.ok("backup", {"backup-file": "exec:exit 7"})
st4 = wait_backup(q)
assert st4["status"] == "error" and st4["errmsg"] == "exec:exit 7: command exited with status 7", st4
assert st4["end-time"] >= st4["start-time"] and st4["finishing"] is False, st4
assert st4["transferred"] <= st4["total"] == TOTAL, st4
assert q.ok("query-jobs") == []
time.sleep(0.1)
assert q.ok("query-backup") == st4
# backup-cancel after the end changes nothing
assert q.ok("backup-cancel") == {}
assert q.ok("query-backup") == st4
q.close()
EOF
quit_vmad
echo PASS
