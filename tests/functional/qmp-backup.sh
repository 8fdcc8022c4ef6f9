#!/usr/bin/env bash
# Live backup over QMP while a real NBD client (qemu-io) writes to the disks: backup to a
# new file, to /dev/fdname/NAME (getfd) and to exec:; the archive holds the disks exactly
# as they were when backup returned (checked with vma extract), the writes are on the
# disks; query-backup through a backup's life; query-jobs; JOB_STATUS_CHANGE,
# BLOCK_JOB_COMPLETED and BLOCK_JOB_CANCELLED; backup-cancel; the errors vzdump users
# see. With a slow target (a pipe read at 1 MiB/s) and a small --backup-buffer-size,
# guest writes over the whole disk finish long before the target could take the data:
# the old data spills to --fleecing-dir.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io
[ -x "${VMA:-$BUILDDIR/vma}" ] || fail "vma not built"
export VMA=${VMA:-$BUILDDIR/vma}

mkdir "$T/fleece" "$T/out"
python3 - "$T" <<'EOF' || fail "creating images"
import os, sys
T = sys.argv[1]
# a: 16 MiB with random content; b: odd size, random content
for name, size in (("a", 16 << 20), ("b", 65536 * 3 + 4096 + 512)):
    with open("%s/%s.raw" % (T, name), "wb") as f:
        f.write(os.urandom(size))
EOF
printf 'memory: 512\nname: test\n' >"$T/vm.conf"
printf '[OPTIONS]\nenable: 1\n' >"$T/vm.fw"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/b.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on" \
    --fleecing-dir "$T/fleece" --backup-buffer-size 256K
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "backup over QMP"
import filecmp, os, shutil, subprocess, sys, threading, time
from qmp import QMP, expect_error

T = sys.argv[1]
VMA = os.environ["VMA"]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
DISKS = {"drive-scsi0": T + "/a.raw", "drive-scsi1": T + "/b.raw"}

def uri(name):
    return "nbd+unix:///%s?socket=%s/nbd.sock" % (name, T)

def qemu_io(name, *cmds):
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + [uri(name)], capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "failed" not in out and "error" not in out.lower(), out
    return out

def snapshot(tag):
    """Copies of the images now (no writer is running)."""
    snap = {}
    for name, path in DISKS.items():
        snap[name] = "%s/%s-%s.snap" % (T, name, tag)
        shutil.copyfile(path, snap[name])
    return snap

def wait_done(timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        st = q.ok("query-backup")
        if st["status"] != "active":
            return st
        assert time.monotonic() < deadline, "backup still active: %r" % st
        time.sleep(0.05)

def check_archive(path, snap, names=None):
    names = names or list(DISKS)
    d = "%s/x-%d" % (T, time.monotonic_ns())
    p = subprocess.run([VMA, "verify", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([VMA, "extract", path, d], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    got = sorted(f for f in os.listdir(d) if f.endswith(".raw"))
    assert got == sorted("disk-%s.raw" % n for n in names), got
    for n in names:
        assert filecmp.cmp("%s/disk-%s.raw" % (d, n), snap[n], shallow=False), \
            "%s in the archive differs from the disk at the backup's start" % n
    shutil.rmtree(d)

def next_event():
    """The next event, in the order they came (with or between responses)."""
    if q.events:
        return q.events.pop(0)
    msg = q.recv()
    assert msg is not None and "event" in msg, msg
    return msg

def job_events(expect, names=None):
    """The job events of the disks, in order, up to status null."""
    seen = {n: [] for n in (names or DISKS)}
    while any(not s or s[-1] != "null" for s in seen.values()):
        ev = next_event()
        d = ev.get("data", {})
        if ev["event"] == "JOB_STATUS_CHANGE":
            seen[d["id"]].append(d["status"])
        elif ev["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"):
            assert d["type"] == "backup" and d["device"] in seen, ev
            assert d["len"] == os.path.getsize(DISKS[d["device"]]), ev
            seen[d["device"]].append(ev["event"] + (":error" if "error" in d else ""))
    for n, s in seen.items():
        assert s == expect, "%s: %r" % (n, s)

# ---- before any backup, and errors ----
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
assert os.listdir(T + "/out") == []

# ---- 1. a new file; writes over NBD right after backup returned ----
qemu_io("drive-scsi0", "write -P 0x11 0 16M")
snap1 = snapshot("1")
out1 = T + "/out/one.vma"
t0 = int(time.time())
r = q.ok("backup", {"backup-file": out1, "config-file": T + "/vm.conf",
                    "firewall-file": T + "/vm.fw", "speed": 8 << 20})
uuid = r["UUID"]
assert len(uuid) == 36 and uuid == uuid.lower(), r
qemu_io("drive-scsi0", "write -P 0x22 0 1M", "write -P 0x23 3M 5M", "write -z 9M 2M",
        "discard 12M 1M", "write -P 0x24 15M 1M")
qemu_io("drive-scsi1", "write -P 0x25 60k 100k", "write -P 0x26 196608 4608")
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
st = wait_done()
assert st["status"] == "done" and "errmsg" not in st, st
assert st["transferred"] == st["total"] and st["end-time"] >= st["start-time"], st
assert q.ok("query-jobs") == []
job_events(["created", "running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded",
            "null"])
check_archive(out1, snap1)
p = subprocess.run([VMA, "config", "-c", "qemu-server.fw", out1], capture_output=True,
                   text=True)
assert p.stdout == "[OPTIONS]\nenable: 1\n", p
# the writes are on the disks
qemu_io("drive-scsi0", "read -P 0x22 0 1M", "read -P 0x23 3M 5M", "read -P 0 9M 2M",
        "read -P 0x24 15M 1M")
qemu_io("drive-scsi1", "read -P 0x25 60k 100k", "read -P 0x26 196608 4608")

# ---- 2. /dev/fdname with a slow reader: guest writes do not wait for it ----
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
snap2 = snapshot("2")
q.ok("backup", {"backup-file": "/dev/fdname/backup"})
# the descriptor was taken over
expect_error(q.cmd("closefd", {"fdname": "backup"}), "GenericError")
t = time.monotonic()
qemu_io("drive-scsi0", "write -P 0x33 0 16M")
qemu_io("drive-scsi1", "write -P 0x34 0 196k")
took = time.monotonic() - t
st = q.ok("query-backup")
assert st["status"] == "active", st
# at 1 MiB/s the target needs ~16 s for this disk: the writes must not have waited
assert took < 6, "guest writes took %.1f s behind a 1 MiB/s target" % took
assert os.listdir(T + "/fleece") == [], os.listdir(T + "/fleece")
rate[0] = None
st = wait_done()
th.join()
assert st["status"] == "done", st
job_events(["created", "running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded",
            "null"])
check_archive(out2, snap2)
qemu_io("drive-scsi0", "read -P 0x33 0 16M")

# ---- 3. exec: with a devlist ----
snap3 = snapshot("3")
out3 = T + "/out/three.vma"
q.ok("backup", {"backup-file": "exec:cat > '%s'" % out3, "devlist": "drive-scsi1",
                "max-workers": 4})
qemu_io("drive-scsi1", "write -P 0x44 0 64k")
st = wait_done()
assert st["status"] == "done" and st["total"] == 65536 * 3 + 4096 + 512, st
check_archive(out3, snap3, ["drive-scsi1"])
job_events(["created", "running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded",
            "null"], ["drive-scsi1"])

# ---- 4. cancel ----
out4 = T + "/out/four.vma"
q.ok("backup", {"backup-file": out4, "speed": 1 << 20})
time.sleep(0.3)
assert q.ok("backup-cancel") == {}
st = wait_done()
assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
assert not os.path.exists(out4)
job_events(["created", "running", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"])

# ---- 5. a failing target ----
q.ok("backup", {"backup-file": "exec:exit 3"})
st = wait_done()
assert st["status"] == "error" and "exec:exit 3" in st["errmsg"], st
job_events(["created", "running", "aborting", "BLOCK_JOB_COMPLETED:error", "concluded",
            "null"])
assert sorted(os.listdir(T + "/out")) == ["one.vma", "three.vma", "two.vma"]
assert os.listdir(T + "/fleece") == []
q.close()
EOF

# a backup running at shutdown is cancelled, its file removed, and vmad exits cleanly
py "$T" <<'EOF' || fail "backup at shutdown"
import sys
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
q.ok("backup", {"backup-file": T + "/out/five.vma", "speed": 1 << 20})
assert q.ok("query-backup")["status"] == "active"
q.ok("quit")
EOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after quit during a backup"
[ ! -e "$T/out/five.vma" ] || fail "the cancelled backup's file was left behind"
check_log
echo PASS
