#!/usr/bin/env bash
# Fault injection into vmad (tests/faultinj/faultinj.c) while qemu-io writes over NBD:
# a backup whose archive write fails (ENOSPC, EIO), whose final flush fails, whose
# background read of a disk fails, whose copy-before-write read fails, or whose fleecing
# file is full, ends with status "error" and an errmsg naming the cause; its file is
# removed; every guest write succeeds and is on the disk; descriptors go back to the
# baseline; vmad goes on serving and the next backup is complete and correct. A failing
# FLUSH reaches the NBD client as an error and nothing else. A second vmad gets EINTR on
# every 3rd I/O call and short transfers on every 2nd file transfer, and must behave
# exactly like an undisturbed one. Both exit cleanly (in a sanitizer build: no leaks).
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/faults-lib.bash"
requires qemu-io
export VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built"

mkdir "$T/fleece" "$T/out"
python3 - "$T" <<'EOF' || fail "creating images"
import os, sys
T = sys.argv[1]
for name, size in (("a", 8 << 20), ("c", 2 << 20), ("e", 4 << 20), ("f", 1 << 20)):
    with open("%s/%s.raw" % (T, name), "wb") as f:
        f.write(os.urandom(size))
EOF

# Which calls fail (the file names of the backups choose the case; a new archive is
# written as .NAME.tmp-XXXXXX until it is complete, so that is the name the rules see):
#   enospc-*.vma  writes fail with ENOSPC after the header and one extent
#   eio-*.vma     writes fail with EIO after the header
#   sync-*.vma    the flush at the end fails
#   c.raw         the first read by a background copy thread fails
#   e.raw         the first read by an NBD thread (a copy-before-write) fails
#   f.raw         every flush fails (FUA writes and FLUSH)
#   fleece/       writes of the fleecing file fail with ENOSPC, while $T/arm-fleece exists
#                 (spilling works in the other cases, which spill when the target is slow)
RULES="op=writev,path=*/out/.enospc-*.vma.tmp-*,after=2,err=ENOSPC"
RULES+=";op=writev,path=*/out/.eio-*.vma.tmp-*,after=1,err=EIO"
RULES+=";op=fdatasync,path=*/out/.sync-*.vma.tmp-*,err=EIO"
RULES+=";op=pread|preadv,path=*/c.raw,thread=backup-copy,count=1,err=EIO"
RULES+=";op=pread|preadv,path=*/e.raw,thread=nbd-*,count=1,err=EIO"
RULES+=";op=fdatasync,path=*/f.raw,err=EIO"
RULES+=";op=pwrite,path=*/fleece/*,if=$T/arm-fleece,err=ENOSPC"

vmad_args() {       # vmad_args SOCKDIR
    echo --monitor "$1/qmp.sock" \
        --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
        --blockdev "driver=file,node-name=drive-scsi1,filename=$T/c.raw" \
        --blockdev "driver=file,node-name=drive-scsi2,filename=$T/e.raw" \
        --blockdev "driver=file,node-name=drive-scsi3,filename=$T/f.raw" \
        --nbd-server "addr.type=unix,addr.path=$1/nbd.sock" \
        --export nbd,id=e0,node-name=drive-scsi0,writable=on \
        --export nbd,id=e1,node-name=drive-scsi1,writable=on \
        --export nbd,id=e2,node-name=drive-scsi2,writable=on \
        --export nbd,id=e3,node-name=drive-scsi3,writable=on \
        --fleecing-dir "$T/fleece" --backup-buffer-size 256K --pidfile "$1/vmad.pid"
}
# shellcheck disable=SC2046
faulty "$RULES" start_vmad $(vmad_args "$T")
wait_socket "$T/qmp.sock"

py "$T" "$VMAD_PID" "$FAULT_LOG" <<'EOF' || fail "backups with injected faults"
import filecmp, os, shutil, subprocess, sys, time
from qmp import QMP

T, PID, FAULT_LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
VMA = os.environ["VMA"]
DISKS = {"drive-scsi0": "a", "drive-scsi1": "c", "drive-scsi2": "e", "drive-scsi3": "f"}

def uri(dev):
    return "nbd+unix:///%s?socket=%s/nbd.sock" % (dev, T)

def qemu_io(dev, *cmds, ok=True, cache=None):
    args = ["qemu-io", "-f", "raw"] + (["-t", cache] if cache else [])
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + [uri(dev)], capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    good = p.returncode == 0 and "failed" not in out and "error" not in out.lower()
    if ok:
        assert good, "qemu-io %r: %s" % (cmds, out)
    return p.returncode, out

def fd_count():
    return len(os.listdir("/proc/%d/fd" % PID))

def faults(pattern):
    if not os.path.exists(FAULT_LOG):
        return 0
    with open(FAULT_LOG) as f:
        return sum(1 for line in f if pattern in line)

def wait_done(q, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        st = q.ok("query-backup")
        if st["status"] != "active":
            return st
        assert time.monotonic() < deadline, "backup still active: %r" % st
        time.sleep(0.05)

def disk_is(name, byte, length=None):
    with open("%s/%s.raw" % (T, name), "rb") as f:
        data = f.read()
    length = length or len(data)
    assert data[:length] == bytes([byte]) * length, "%s.raw lacks the guest's writes" % name

def wait_fds(baseline, timeout=10):
    deadline = time.monotonic() + timeout
    while fd_count() > baseline:
        assert time.monotonic() < deadline, \
            "descriptors: %d, baseline %d: %r" % (fd_count(), baseline,
                                                  [os.readlink("/proc/%d/fd/%s" % (PID, n))
                                                   for n in os.listdir("/proc/%d/fd" % PID)])
        time.sleep(0.05)

q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
baseline = fd_count()

def failing_backup(args, guest_dev, guest_name, pattern, fault, errmsg_has):
    """Start a backup, write the whole disk over NBD meanwhile, expect a clean failure."""
    before = faults(fault)
    q.ok("backup", args)
    qemu_io(guest_dev, "write -P 0x%02x 0 %d" % (pattern, os.path.getsize(
        "%s/%s.raw" % (T, guest_name))))
    st = wait_done(q)
    assert st["status"] == "error", st
    assert errmsg_has in st.get("errmsg", ""), "errmsg %r lacks %r" % (st.get("errmsg"),
                                                                      errmsg_has)
    assert faults(fault) > before, "the fault %r was not injected" % fault
    disk_is(guest_name, pattern)
    assert os.listdir(T + "/out") == [], os.listdir(T + "/out")
    assert os.listdir(T + "/fleece") == [], os.listdir(T + "/fleece")
    wait_fds(baseline)

# the archive's writes fail: ENOSPC after an extent, EIO after the header
failing_backup({"backup-file": T + "/out/enospc-1.vma", "devlist": "drive-scsi0",
                "speed": 1 << 20}, "drive-scsi0", "a", 0x11, "enospc-1.vma",
               "No space left on device")
failing_backup({"backup-file": T + "/out/eio-1.vma", "devlist": "drive-scsi0",
                "speed": 1 << 20},
               "drive-scsi0", "a", 0x12, "eio-1.vma", "Input/output error")
# the final flush of the archive fails
failing_backup({"backup-file": T + "/out/sync-1.vma", "devlist": "drive-scsi0,drive-scsi3"},
               "drive-scsi0", "a", 0x13, "sync-1.vma", "Input/output error")
# the background copy cannot read a disk; guest reads and writes of it still work
failing_backup({"backup-file": T + "/out/read-1.vma", "devlist": "drive-scsi1"},
               "drive-scsi1", "c", 0x14, "c.raw thread=backup-copy", "Input/output error")
qemu_io("drive-scsi1", "read -P 0x14 0 2M", "write -P 0x15 4k 4k", "read -P 0x15 4k 4k")
# a copy-before-write read fails: the guest's write still goes through
failing_backup({"backup-file": T + "/out/cbw-1.vma", "devlist": "drive-scsi2",
                "speed": 65536}, "drive-scsi2", "e", 0x16, "e.raw thread=nbd", "read")
# the fleecing file cannot grow: the buffer is exhausted, the guest goes on
open(T + "/arm-fleece", "w").close()
failing_backup({"backup-file": "exec:sleep 2; cat >/dev/null", "devlist": "drive-scsi0"},
               "drive-scsi0", "a", 0x17, "/fleece/", "copy-before-write buffer exhausted")
os.unlink(T + "/arm-fleece")

# a failing flush is an error for the NBD client, and only for that request: a write in
# qemu-io's default write-through mode (FUA), and an explicit FLUSH after a plain write
rc, out = qemu_io("drive-scsi3", "write -P 0x21 0 64k", ok=False)
assert rc != 0 and "write failed: Input/output error" in out, out
assert faults("f.raw") >= 1, "the FUA fault was not injected"
before = faults("f.raw")
rc, out = qemu_io("drive-scsi3", "write -P 0x22 0 64k", "flush", cache="writeback", ok=False)
# (qemu-io reports a failed flush only in its exit status)
assert rc != 0 and "wrote 65536/65536" in out and "failed" not in out, out
assert faults("f.raw") > before, "the flush fault was not injected"
qemu_io("drive-scsi3", "read -P 0x22 0 64k", "write -P 0x23 64k 64k", "read -P 0x23 64k 64k",
        cache="writeback")
disk_is("f", 0x22, 65536)

# vmad still serves, and a backup now is complete and exact
wait_fds(baseline)
qemu_io("drive-scsi0", "write -P 0x31 1M 1M", "read -P 0x31 1M 1M")
snap = {}
for dev, name in DISKS.items():
    snap[dev] = "%s/%s.snap" % (T, name)
    shutil.copyfile("%s/%s.raw" % (T, name), snap[dev])
good = T + "/good.vma"
q.ok("backup", {"backup-file": good})
st = wait_done(q)
assert st["status"] == "done", st
subprocess.run([VMA, "verify", good], check=True)
subprocess.run([VMA, "extract", good, T + "/x"], check=True, capture_output=True)
for dev in DISKS:
    assert filecmp.cmp("%s/x/disk-%s.raw" % (T, dev), snap[dev], shallow=False), dev
wait_fds(baseline)
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exited with status $VMAD_RC"
check_log

# ---- EINTR on every 3rd call, short transfers on every 2nd file transfer ---------------
mv "$T/vmad.log" "$T/vmad-1.log"
fault_log_reset
mkdir "$T/s2"
# shellcheck disable=SC2046
faulty "op=*,every=3,mode=eintr;op=pread|pwrite|preadv|pwritev|writev|read|write,path=/*,every=2,mode=short" \
    start_vmad $(vmad_args "$T/s2")
wait_socket "$T/s2/qmp.sock"
py "$T" <<'EOF' || fail "vmad with EINTR and short transfers"
import filecmp, os, shutil, subprocess, sys, time
from qmp import QMP

T = sys.argv[1]
VMA = os.environ["VMA"]
DISKS = {"drive-scsi0": "a", "drive-scsi1": "c", "drive-scsi2": "e", "drive-scsi3": "f"}

def qemu_io(dev, *cmds):
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + ["nbd+unix:///%s?socket=%s/s2/nbd.sock" % (dev, T)],
                       capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "failed" not in out and "error" not in out.lower(), out

q = QMP(T + "/s2/qmp.sock", timeout=60)
q.negotiate()
for n, target in enumerate(["%s/out/one.vma" % T, "exec:cat >'%s/out/two.vma'" % T]):
    snap = {}
    for dev, name in DISKS.items():
        snap[dev] = "%s/%s.snap" % (T, name)
        shutil.copyfile("%s/%s.raw" % (T, name), snap[dev])
    q.ok("backup", {"backup-file": target, "speed": 4 << 20})
    qemu_io("drive-scsi0", "write -P 0x4%d 0 8M" % n, "flush", "read -P 0x4%d 0 8M" % n)
    qemu_io("drive-scsi2", "write -P 0x5%d 4k 12k" % n, "flush")
    deadline = time.monotonic() + 60
    while True:
        st = q.ok("query-backup")
        if st["status"] != "active":
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["status"] == "done", st
    path = "%s/out/%s.vma" % (T, ["one", "two"][n])
    subprocess.run([VMA, "verify", path], check=True)
    d = "%s/x%d" % (T, n)
    subprocess.run([VMA, "extract", path, d], check=True, capture_output=True)
    for dev in DISKS:
        assert filecmp.cmp("%s/disk-%s.raw" % (d, dev), snap[dev], shallow=False), dev
with open(T + "/a.raw", "rb") as f:
    assert f.read() == b"\x41" * (8 << 20)
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad (EINTR) exited with status $VMAD_RC"
[ "$(faults_injected eintr)" -gt 100 ] || fail "too few EINTR faults: $(faults_injected eintr)"
[ "$(faults_injected short)" -gt 100 ] || fail "too few short transfers: $(faults_injected short)"
check_log
echo PASS
