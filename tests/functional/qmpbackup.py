"""qmpbackup.py — what the qmp-backup-*.sh tests share (qmp-backup.bash starts vmad with
two disks, drive-scsi0 16 MiB and drive-scsi1 of an odd size, both exported writable over
NBD, a fleecing directory and a 256 KiB backup buffer):

    b = Backup(T)               # a negotiated QMP connection: b.q
    b.qemu_io(node, "write -P 0x11 0 1M", ...)  # qemu-io on the export; must succeed
    snap = b.snapshot(tag)      # copies of the disk images now (no writer running)
    st = b.wait_done()          # query-backup until the backup is no longer active
    b.check_archive(path, snap[, names])  # vma verify; vma extract equals the snapshot
    b.job_events(expect[, names])         # each disk's job events, in order, up to null
"""
import filecmp
import os
import shutil
import subprocess
import time

from qmp import QMP

SIZES = {"drive-scsi0": 16 << 20, "drive-scsi1": 65536 * 3 + 4096 + 512}
OK_EVENTS = ["created", "running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded",
             "null"]


class Backup:
    def __init__(self, T):
        self.T = T
        self.vma = os.environ["VMA"]
        self.disks = {"drive-scsi0": T + "/a.raw", "drive-scsi1": T + "/b.raw"}
        self.q = QMP(T + "/qmp.sock", timeout=60)
        self.q.negotiate()

    def uri(self, name):
        return "nbd+unix:///%s?socket=%s/nbd.sock" % (name, self.T)

    def qemu_io(self, name, *cmds):
        args = ["qemu-io", "-f", "raw"]
        for c in cmds:
            args += ["-c", c]
        p = subprocess.run(args + [self.uri(name)], capture_output=True, text=True,
                           timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 0 and "failed" not in out and "error" not in out.lower(), out
        return out

    def snapshot(self, tag):
        snap = {}
        for name, path in self.disks.items():
            snap[name] = "%s/%s-%s.snap" % (self.T, name, tag)
            shutil.copyfile(path, snap[name])
        return snap

    def wait_done(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.q.ok("query-backup")
            if st["status"] != "active":
                return st
            assert time.monotonic() < deadline, "backup still active: %r" % st
            time.sleep(0.05)

    def check_archive(self, path, snap, names=None):
        names = names or list(self.disks)
        d = "%s/x-%d" % (self.T, time.monotonic_ns())
        p = subprocess.run([self.vma, "verify", path], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        p = subprocess.run([self.vma, "extract", path, d], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        got = sorted(f for f in os.listdir(d) if f.endswith(".raw"))
        assert got == sorted("disk-%s.raw" % n for n in names), got
        for n in names:
            assert filecmp.cmp("%s/disk-%s.raw" % (d, n), snap[n], shallow=False), \
                "%s in the archive differs from the disk at the backup's start" % n
        shutil.rmtree(d)

    def next_event(self):
        """The next event, in the order they came (with or between responses)."""
        if self.q.events:
            return self.q.events.pop(0)
        msg = self.q.recv()
        assert msg is not None and "event" in msg, msg
        return msg

    def job_events(self, expect, names=None):
        seen = {n: [] for n in (names or self.disks)}
        while any(not s or s[-1] != "null" for s in seen.values()):
            ev = self.next_event()
            d = ev.get("data", {})
            if ev["event"] == "JOB_STATUS_CHANGE":
                seen[d["id"]].append(d["status"])
            elif ev["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"):
                assert d["type"] == "backup" and d["device"] in seen, ev
                assert d["len"] == os.path.getsize(self.disks[d["device"]]), ev
                seen[d["device"]].append(ev["event"] + (":error" if "error" in d else ""))
        for n, s in seen.items():
            assert s == expect, "%s: %r" % (n, s)

    def out_files(self):
        return sorted(os.listdir(self.T + "/out"))

    def fleece_files(self):
        return sorted(os.listdir(self.T + "/fleece"))
