"""faultsbackup.py — what the faults-backup-*.sh tests share (faults-backup.bash has the
four disks drive-scsi0..3 = a, c, e, f .raw, each exported writable over NBD on
T/nbd.sock, the monitor on T/qmp.sock, fleecing in T/fleece, archives in T/out):

    f = Faults(T, PID, FAULT_LOG)  # a negotiated QMP connection: f.q; f.baseline: vmad's
                                   # descriptors now
    f.qemu_io(dev, cmd, ..., ok=True, cache=None)  # qemu-io on the export: (rc, output);
                                   # with ok, it must succeed without an error message
    f.faults(pattern)              # lines of the fault log that contain pattern
    f.wait_done()                  # query-backup until the backup is no longer active
    f.disk_is(name, byte[, length])  # name.raw holds byte throughout (the guest's writes)
    f.wait_fds()                   # vmad's descriptors back to the baseline within 10 s
    f.snapshot()                   # copies of the images now: dev -> T/NAME.snap
    f.check_archive(path, snap, d) # vma verify; vma extract into d equals the snapshot
"""
import filecmp
import os
import shutil
import subprocess
import time

from qmp import QMP

DISKS = {"drive-scsi0": "a", "drive-scsi1": "c", "drive-scsi2": "e", "drive-scsi3": "f"}


class Faults:
    def __init__(self, T, pid=None, fault_log=None):
        self.T = T
        self.pid = pid
        self.fault_log = fault_log
        self.vma = os.environ["VMA"]
        self.q = QMP(T + "/qmp.sock", timeout=60)
        self.q.negotiate()
        self.baseline = self.fd_count() if pid else None

    def uri(self, dev):
        return "nbd+unix:///%s?socket=%s/nbd.sock" % (dev, self.T)

    def qemu_io(self, dev, *cmds, ok=True, cache=None):
        args = ["qemu-io", "-f", "raw"] + (["-t", cache] if cache else [])
        for c in cmds:
            args += ["-c", c]
        p = subprocess.run(args + [self.uri(dev)], capture_output=True, text=True,
                           timeout=120)
        out = p.stdout + p.stderr
        good = p.returncode == 0 and "failed" not in out and "error" not in out.lower()
        if ok:
            assert good, "qemu-io %r: %s" % (cmds, out)
        return p.returncode, out

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def faults(self, pattern):
        if not os.path.exists(self.fault_log):
            return 0
        with open(self.fault_log) as f:
            return sum(1 for line in f if pattern in line)

    def wait_done(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.q.ok("query-backup")
            if st["status"] != "active":
                return st
            assert time.monotonic() < deadline, "backup still active: %r" % st
            time.sleep(0.05)

    def disk_is(self, name, byte, length=None):
        with open("%s/%s.raw" % (self.T, name), "rb") as f:
            data = f.read()
        length = length or len(data)
        assert data[:length] == bytes([byte]) * length, "%s.raw lacks the guest's writes" % name

    def wait_fds(self, timeout=10):
        deadline = time.monotonic() + timeout
        fd_dir = "/proc/%d/fd" % self.pid
        while self.fd_count() > self.baseline:
            assert time.monotonic() < deadline, \
                "descriptors: %d, baseline %d: %r" % (
                    self.fd_count(), self.baseline,
                    [os.readlink("%s/%s" % (fd_dir, n)) for n in os.listdir(fd_dir)])
            time.sleep(0.05)

    def snapshot(self):
        snap = {}
        for dev, name in DISKS.items():
            snap[dev] = "%s/%s.snap" % (self.T, name)
            shutil.copyfile("%s/%s.raw" % (self.T, name), snap[dev])
        return snap

    def check_archive(self, path, snap, d):
        subprocess.run([self.vma, "verify", path], check=True)
        subprocess.run([self.vma, "extract", path, d], check=True, capture_output=True)
        for dev in DISKS:
            assert filecmp.cmp("%s/disk-%s.raw" % (d, dev), snap[dev], shallow=False), dev
