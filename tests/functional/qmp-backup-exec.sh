#!/usr/bin/env bash
# A live backup of one disk (devlist) to an exec: command with four workers while qemu-io
# writes to that disk: status done, the total is that disk's size, the archive holds only
# it, as it was when backup returned; only its job runs.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'EOF' || fail "backup to exec: with a devlist"
import filecmp, os, subprocess, sys, threading, time
from qmp import expect_error
from qmpbackup import Backup, OK_EVENTS

b = Backup(sys.argv[1])
q, T, VMA = b.q, b.T, b.vma
snap3 = b.snapshot("3")
out3 = T + "/out/three.vma"
q.ok("backup", {"backup-file": "exec:cat > '%s'" % out3, "devlist": "drive-scsi1",
                "max-workers": 4})
b.qemu_io("drive-scsi1", "write -P 0x44 0 64k")
st = b.wait_done()
assert st["status"] == "done" and st["total"] == 65536 * 3 + 4096 + 512, st
b.check_archive(out3, snap3, ["drive-scsi1"])
b.job_events(OK_EVENTS, ["drive-scsi1"])
assert b.out_files() == ["three.vma"], b.out_files()
assert b.fleece_files() == [], b.fleece_files()
q.close()
EOF
quit_vmad
echo PASS
