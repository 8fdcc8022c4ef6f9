#!/usr/bin/env bash
# A live backup to /dev/fdname/NAME (a pipe passed with getfd) read at 1 MiB/s, with a
# 256 KiB backup buffer: guest writes over both whole disks finish long before the target
# could take the data (the old data spills to the fleecing directory, which is empty
# again afterwards); the descriptor is taken over (closefd fails); the archive holds the
# disks as they were when backup returned, the writes are on the disks.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'EOF' || fail "backup to a slow /dev/fdname"
import filecmp, os, subprocess, sys, threading, time
from qmp import expect_error
from qmpbackup import Backup, OK_EVENTS

b = Backup(sys.argv[1])
q, T, VMA = b.q, b.T, b.vma
rfd, wfd = os.pipe()
assert q.cmd("getfd", {"fdname": "backup"}, fds=[wfd]) == {"return": {}}
os.close(wfd)
rate = [1 << 20]                      # bytes/s; None: as fast as possible
out2 = T + "/out/two.vma"
def reader():
    start, total = time.monotonic(), 0
    with open(out2, "wb") as f:
        while True:
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            f.write(chunk)
            total += len(chunk)
            if rate[0]:
                due = start + total / rate[0]
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            else:
                start, total = time.monotonic(), 0
    os.close(rfd)
th = threading.Thread(target=reader)
th.start()
snap2 = b.snapshot("2")
q.ok("backup", {"backup-file": "/dev/fdname/backup"})
# the descriptor was taken over
expect_error(q.cmd("closefd", {"fdname": "backup"}), "GenericError")
t = time.monotonic()
b.qemu_io("drive-scsi0", "write -P 0x33 0 16M")
b.qemu_io("drive-scsi1", "write -P 0x34 0 196k")
took = time.monotonic() - t
st = q.ok("query-backup")
assert st["status"] == "active", st
# at 1 MiB/s the target needs ~16 s for this disk: the writes must not have waited
assert took < 6, "guest writes took %.1f s behind a 1 MiB/s target" % took
assert b.fleece_files() == [], b.fleece_files()
rate[0] = None
st = b.wait_done()
th.join()
assert st["status"] == "done", st
b.job_events(OK_EVENTS)
b.check_archive(out2, snap2)
b.qemu_io("drive-scsi0", "read -P 0x33 0 16M")
assert b.out_files() == ["two.vma"], b.out_files()
assert b.fleece_files() == [], b.fleece_files()
q.close()
EOF
quit_vmad
echo PASS
