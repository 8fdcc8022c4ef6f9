#!/usr/bin/env bash
# A backup whose target fails (exec:exit 3): query-backup reports error naming the
# command, each job ends with BLOCK_JOB_COMPLETED carrying the error; nothing is left in
# the output or the fleecing directory.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'EOF' || fail "a failing backup target"
import filecmp, os, subprocess, sys, threading, time
from qmp import expect_error
from qmpbackup import Backup, OK_EVENTS

b = Backup(sys.argv[1])
q, T, VMA = b.q, b.T, b.vma
q.ok("backup", {"backup-file": "exec:exit 3"})
st = b.wait_done()
assert st["status"] == "error" and "exec:exit 3" in st["errmsg"], st
b.job_events(["created", "running", "aborting", "BLOCK_JOB_COMPLETED:error", "concluded",
              "null"])
assert b.out_files() == [], b.out_files()
assert b.fleece_files() == [], b.fleece_files()
q.close()
EOF
quit_vmad
echo PASS
