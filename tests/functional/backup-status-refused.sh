#!/usr/bin/env bash
# Failed backup commands after a backup change nothing, neither the files nor
# query-backup: an existing output file is left untouched, a directory as config file,
# a device listed twice, an unknown device.
. "$(dirname "$0")/backup-status.bash"

py "$T" <<'EOF' || fail "failed backup commands"
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

before = os.listdir(T + "/out")
expect_error(q.cmd("backup", {"backup-file": out}), "GenericError",
             "create %s: File exists" % out)
assert vma_uuid(out) == uuid, "the existing file was touched"
expect_error(q.cmd("backup", {"backup-file": T + "/out/b.vma", "config-file": T}),
             "GenericError", "unable to read file '%s'" % T)
expect_error(q.cmd("backup", {"backup-file": T + "/out/b.vma",
                              "devlist": "drive-scsi0,drive-scsi0"}), "GenericError")
expect_error(q.cmd("backup", {"backup-file": T + "/out/b.vma", "devlist": "drive-scsi1,nope"}),
             "DeviceNotFound", "Device 'nope' not found")
assert os.listdir(T + "/out") == before, os.listdir(T + "/out")
assert q.ok("query-backup") == st, "a refused backup changed the status"
q.close()
EOF
quit_vmad
echo PASS
