#!/usr/bin/env bash
# QMP backup before any backup ran, and the start errors vzdump users see: query-backup
# and query-jobs are empty, backup-cancel without a backup succeeds, an unknown device in
# the devlist, an empty devlist, an unknown format, an unreadable config file and an
# unknown /dev/fdname are refused with QEMU's error classes, and nothing is created.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'EOF' || fail "backup errors"
import filecmp, os, subprocess, sys, threading, time
from qmp import expect_error
from qmpbackup import Backup, OK_EVENTS

b = Backup(sys.argv[1])
q, T, VMA = b.q, b.T, b.vma
assert q.ok("query-backup") == {"finishing": False}
assert q.ok("query-jobs") == []
assert q.ok("backup-cancel") == {}
assert q.ok("query-backup") == {"finishing": False}
expect_error(q.cmd("backup", {"backup-file": T + "/out/x.vma", "devlist": "drive-scsi0,nope"}),
             "DeviceNotFound", "Device 'nope' not found")
expect_error(q.cmd("backup", {"backup-file": T + "/out/x.vma", "devlist": ";"}),
             "GenericError", "empty device list")
expect_error(q.cmd("backup", {"backup-file": T + "/out/x.vma", "format": "pbs"}),
             "GenericError", "unknown backup format")
expect_error(q.cmd("backup", {"backup-file": T + "/out/x.vma", "config-file": T + "/nope"}),
             "GenericError", "unable to read file '%s/nope'" % T)
expect_error(q.cmd("backup", {"backup-file": "/dev/fdname/none"}), "GenericError")
assert b.out_files() == []
q.close()
EOF
quit_vmad
echo PASS
