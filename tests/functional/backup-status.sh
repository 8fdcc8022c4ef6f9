#!/usr/bin/env bash
# query-backup, query-jobs and the backup command's errors through a backup's life, for
# what the qmp-backup-*.sh tests do not cover: zero-bytes equal to the zero 4 KiB blocks
# of disks with known content (holes and written zeros, an odd-sized disk), the uuid equal to the
# archive's (vma list --json), start/end times against the wall clock, progress that only
# grows and stays within the totals, finishing only while active, a status that stays put
# after the end and after failed backup commands, a second backup refused while one runs
# without disturbing it, an existing output file left untouched, a directory as config
# file, a device listed twice, read-only disks left out by default, explicit format vma,
# ':' as devlist separator, max-workers above the limit, a negative speed, and a disk in
# a running backup refusing blockdev-del.
. "$(dirname "$0")/qmp-lib.bash"
[ -x "$VMA" ] || fail "vma not built"

mkdir "$T/out"
python3 - "$T" <<'EOF' || fail "creating images"
import os, random, sys
T = sys.argv[1]
rnd = random.Random(5)
B = 4096
# d0: 2 MiB + 4.5 KiB; random data in about a third of its 4 KiB blocks, written zeros
# in another third, holes elsewhere; the partial last block holds data
size0 = (2 << 20) + 4096 + 512
with open(T + "/d0.raw", "wb") as f:
    f.truncate(size0)
    for b in range(size0 // B):
        r = rnd.randrange(3)
        if r == 0:
            f.seek(b * B)
            f.write(rnd.randbytes(B) if b % 7 else b"\0" * 4095 + b"\1")
        elif r == 1:
            f.seek(b * B)
            f.write(bytes(B))
    f.seek(size0 - 512)
    f.write(rnd.randbytes(512))
# d1: 1 MiB, every 5th block data, the rest a hole
with open(T + "/d1.raw", "wb") as f:
    f.truncate(1 << 20)
    for b in range(0, 256, 5):
        f.seek(b * B)
        f.write(rnd.randbytes(B))
# ro: a read-only disk is not backed up by default
with open(T + "/ro.raw", "wb") as f:
    f.write(rnd.randbytes(1 << 16))
EOF
printf 'name: status\n' >"$T/vm.conf"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --blockdev "driver=file,node-name=drive-ro,filename=$T/ro.raw,read-only=on"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "query-backup through a backup's life"
import json, os, subprocess, sys, time
from qmp import QMP, expect_error
from pitlib import wait_backup

T = sys.argv[1]
VMA = os.environ["VMA"]
B = 4096
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
DISKS = {"drive-scsi0": T + "/d0.raw", "drive-scsi1": T + "/d1.raw"}
SIZES = {n: os.path.getsize(p) for n, p in DISKS.items()}
TOTAL = sum(SIZES.values())

def zero_bytes(path):
    data = open(path, "rb").read()
    full = len(data) // B * B
    z = sum(B for o in range(0, full, B) if not data[o:o + B].strip(b"\0"))
    return z, data[full:]

def vma_uuid(path):
    p = subprocess.run([VMA, "list", "--json", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["uuid"]

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
want = 0
for n, path in DISKS.items():
    z, tail = zero_bytes(path)
    assert not tail or tail.strip(b"\0"), "test setup: the tail must hold data"
    want += z
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

# ---- failed commands change nothing ----
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

# ---- default devlist: every writable disk, not the read-only one; a second backup
# is refused while one runs and does not disturb it ----
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
assert st2["zero-bytes"] == st["zero-bytes"], (st2, st)
assert vma_uuid(out2) == uuid2

# ---- negative speed = unlimited; status of a failed backup ----
out3 = T + "/out/c.vma"
t0 = time.monotonic()
q.ok("backup", {"backup-file": out3, "speed": -5})
st3 = wait_backup(q)
assert st3["status"] == "done" and time.monotonic() - t0 < 10, st3
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
# the status names a passed descriptor as /dev/fdname/NAME
r_, w_ = os.pipe()
assert q.cmd("getfd", {"fdname": "pipe"}, fds=[w_]) == {"return": {}}
os.close(w_)
q.ok("backup", {"backup-file": "/dev/fdname/pipe", "devlist": "drive-scsi1"})
data = b""
while True:
    chunk = os.read(r_, 1 << 20)
    if not chunk:
        break
    data += chunk
os.close(r_)
st5 = wait_backup(q)
assert st5["status"] == "done" and st5["backup-file"] == "/dev/fdname/pipe", st5
assert st5["total"] == SIZES["drive-scsi1"], st5
with open(T + "/out/d.vma", "wb") as f:
    f.write(data)
assert vma_uuid(T + "/out/d.vma") == st5["uuid"]
q.close()
EOF
quit_vmad
echo PASS
