#!/usr/bin/env bash
# query-backup and query-jobs through a slow backup's life (config-file, explicit format
# vma, ':' as devlist separator, max-workers above the limit): the uuid equal to the
# archive's (vma list --json), start/end times against the wall clock, progress that
# only grows and stays within the totals, finishing only while active, zero-bytes equal
# to the zero 4 KiB blocks of disks with known content (holes and written zeros, an
# odd-sized disk), the read-only disk left out, a status that stays put after the end;
# a disk in a running backup refuses blockdev-del.
. "$(dirname "$0")/backup-status.bash"

py "$T" <<'EOF' || fail "query-backup through a backup's life"
import json, os, subprocess, sys, time
from qmp import expect_error
from pitlib import wait_backup
from backupstatus import Status

s = Status(sys.argv[1])
q, T, VMA = s.q, s.T, s.vma
DISKS, SIZES, TOTAL = s.disks, s.sizes, s.total
vma_uuid = s.vma_uuid

assert q.ok("query-backup") == {"finishing": False}

# ---- a slow backup, watched ----
out = T + "/out/a.vma"
t_before = int(time.time())
r = q.ok("backup", {"backup-file": out, "config-file": T + "/vm.conf", "format": "vma",
                    "devlist": "drive-scsi0:drive-scsi1", "speed": 2 << 20,
                    "max-workers": 1000})
uuid = r["UUID"]
# a disk in a running backup cannot be deleted
expect_error(q.cmd("blockdev-del", {"node-name": "drive-scsi1"}), "GenericError",
             "delete drive-scsi1: node is in use")
last_t, last_jobs, polls, saw_active_jobs = 0, {}, 0, False
while True:
    st = q.ok("query-backup")
    jobs = q.ok("query-jobs")
    polls += 1
    if st["status"] != "active":
        break
    assert st["uuid"] == uuid and st["backup-file"] == out, st
    assert st["total"] == st["dirty"] == TOTAL and st["reused"] == 0, st
    assert "end-time" not in st and "errmsg" not in st, st
    assert t_before <= st["start-time"] <= int(time.time()), st
    assert last_t <= st["transferred"] <= TOTAL, (last_t, st)
    assert 0 <= st["zero-bytes"] <= st["transferred"], st
    last_t = st["transferred"]
    for j in jobs:
        n = j["id"]
        assert n in DISKS and j["type"] == "backup" and "error" not in j, j
        assert j["total-progress"] == SIZES[n], j
        assert last_jobs.get(n, 0) <= j["current-progress"] <= SIZES[n], (last_jobs, j)
        last_jobs[n] = j["current-progress"]
        if j["status"] == "running":
            saw_active_jobs = True
    time.sleep(0.05)
t_after = int(time.time())
assert polls > 5 and saw_active_jobs, "the backup was too quick to watch (%d polls)" % polls
assert st["status"] == "done" and st["finishing"] is False, st
assert st["transferred"] == st["total"] == TOTAL, st
assert st["start-time"] <= st["end-time"] <= t_after, st
assert q.ok("query-jobs") == []
# zero-bytes: the zero 4 KiB blocks (holes and written zeros) of both disks; the
# partial last block of d0 holds data, so it is not counted either way
want = s.zero_bytes()
assert st["zero-bytes"] == want, "zero-bytes %d, the disks have %d" % (st["zero-bytes"], want)
assert vma_uuid(out) == uuid, (vma_uuid(out), uuid)
p = subprocess.run([VMA, "verify", out], capture_output=True, text=True)
assert p.returncode == 0, p.stdout + p.stderr
# the read-only disk was not asked for; the archive holds just the two
names = [d["name"] for d in json.loads(subprocess.run([VMA, "list", "--json", out],
                                                      capture_output=True, text=True).stdout)["devices"]]
assert names == ["drive-scsi0", "drive-scsi1"], names
# the status stays put
time.sleep(0.2)
assert q.ok("query-backup") == st
q.close()
EOF
quit_vmad
echo PASS
