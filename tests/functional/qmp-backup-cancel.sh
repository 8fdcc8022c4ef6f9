#!/usr/bin/env bash
# backup-cancel of a running (speed-limited) backup: query-backup reports error "backup
# canceled", the partial file is removed, each job ends with BLOCK_JOB_CANCELLED.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'EOF' || fail "backup-cancel"
import filecmp, os, subprocess, sys, threading, time
from qmp import expect_error
from qmpbackup import Backup, OK_EVENTS

b = Backup(sys.argv[1])
q, T, VMA = b.q, b.T, b.vma
out4 = T + "/out/four.vma"
q.ok("backup", {"backup-file": out4, "speed": 1 << 20})
time.sleep(0.3)
assert q.ok("backup-cancel") == {}
st = b.wait_done()
assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
assert not os.path.exists(out4)
b.job_events(["created", "running", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"])
assert b.out_files() == [], b.out_files()
assert b.fleece_files() == [], b.fleece_files()
q.close()
EOF
quit_vmad
echo PASS
