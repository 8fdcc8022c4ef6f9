"""backupstatus.py — what the backup-status-*.sh tests share (backup-status.bash starts
vmad with drive-scsi0 = d0.raw, 2 MiB + 4.5 KiB of data, written zeros and holes,
drive-scsi1 = d1.raw, 1 MiB, mostly holes, and the read-only drive-ro):

    s = Status(T)               # a negotiated QMP connection: s.q
    s.disks, s.sizes, s.total   # the writable disks: node -> image, node -> size, the sum
    s.zero_bytes()              # the zero 4 KiB blocks of both disks, as query-backup counts
    s.vma_uuid(path)            # the uuid of an archive (vma list --json)
"""
import json
import os
import subprocess

from qmp import QMP

B = 4096


class Status:
    def __init__(self, T):
        self.T = T
        self.vma = os.environ["VMA"]
        self.disks = {"drive-scsi0": T + "/d0.raw", "drive-scsi1": T + "/d1.raw"}
        self.sizes = {n: os.path.getsize(p) for n, p in self.disks.items()}
        self.total = sum(self.sizes.values())
        self.q = QMP(T + "/qmp.sock", timeout=60)
        self.q.negotiate()

    def zero_bytes(self):
        """The zero 4 KiB blocks (holes and written zeros) of both disks; the partial last
        block of d0 holds data, so it is not counted either way."""
        want = 0
        for path in self.disks.values():
            data = open(path, "rb").read()
            full = len(data) // B * B
            want += sum(B for o in range(0, full, B) if not data[o:o + B].strip(b"\0"))
            tail = data[full:]
            assert not tail or tail.strip(b"\0"), "test setup: the tail must hold data"
        return want

    def vma_uuid(self, path):
        p = subprocess.run([self.vma, "list", "--json", path], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)["uuid"]
