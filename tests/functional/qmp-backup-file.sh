#!/usr/bin/env bash
# A live backup over QMP into a new file while qemu-io writes over NBD right after backup
# returned: the archive (vma verify, vma extract) holds the disks as they were when backup
# returned, with the config and firewall files; the writes are on the disks. query-backup
# (uuid, totals, start and end time, done), query-jobs while it runs and after, a second
# backup refused while one runs, and each disk's job events in order.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'EOF' || fail "backup to a new file"
import filecmp, os, subprocess, sys, threading, time
from qmp import expect_error
from qmpbackup import Backup, OK_EVENTS

b = Backup(sys.argv[1])
q, T, VMA = b.q, b.T, b.vma
b.qemu_io("drive-scsi0", "write -P 0x11 0 16M")
snap1 = b.snapshot("1")
out1 = T + "/out/one.vma"
t0 = int(time.time())
r = q.ok("backup", {"backup-file": out1, "config-file": T + "/vm.conf",
                    "firewall-file": T + "/vm.fw", "speed": 8 << 20})
uuid = r["UUID"]
assert len(uuid) == 36 and uuid == uuid.lower(), r
b.qemu_io("drive-scsi0", "write -P 0x22 0 1M", "write -P 0x23 3M 5M", "write -z 9M 2M",
          "discard 12M 1M", "write -P 0x24 15M 1M")
b.qemu_io("drive-scsi1", "write -P 0x25 60k 100k", "write -P 0x26 196608 4608")
st = q.ok("query-backup")
assert st["status"] == "active" and st["uuid"] == uuid and st["backup-file"] == out1, st
assert st["total"] == st["dirty"] == (16 << 20) + 65536 * 3 + 4096 + 512, st
assert st["reused"] == 0 and st["finishing"] is False and "end-time" not in st, st
assert t0 <= st["start-time"] <= t0 + 2, st
jobs = q.ok("query-jobs")
assert [j["id"] for j in jobs] == ["drive-scsi0", "drive-scsi1"], jobs
assert all(j["type"] == "backup" and j["status"] == "running" for j in jobs), jobs
assert jobs[0]["total-progress"] == 16 << 20, jobs
expect_error(q.cmd("backup", {"backup-file": T + "/out/two.vma"}), "GenericError",
             "previous backup not finished")
st = b.wait_done()
assert st["status"] == "done" and "errmsg" not in st, st
assert st["transferred"] == st["total"] and st["end-time"] >= st["start-time"], st
assert q.ok("query-jobs") == []
b.job_events(OK_EVENTS)
b.check_archive(out1, snap1)
p = subprocess.run([VMA, "config", "-c", "qemu-server.fw", out1], capture_output=True,
                   text=True)
assert p.stdout == "[OPTIONS]\nenable: 1\n", p
# the writes are on the disks
b.qemu_io("drive-scsi0", "read -P 0x22 0 1M", "read -P 0x23 3M 5M", "read -P 0 9M 2M",
          "read -P 0x24 15M 1M")
b.qemu_io("drive-scsi1", "read -P 0x25 60k 100k", "read -P 0x26 196608 4608")
assert b.out_files() == ["one.vma"], b.out_files()
assert b.fleece_files() == [], b.fleece_files()
q.close()
EOF
quit_vmad
echo PASS
