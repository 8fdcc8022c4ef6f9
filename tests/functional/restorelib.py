"""restorelib.py — helpers of the live-restore functional tests (python3 standard library).

    m = Model(src_path)                 # what the disk must read as: the source, then writes
    m.random_ops(rng, n)                # n random writes / write-zeroes / discards, as
                                        # qemu-io commands, applied to the model
                                        # (discard=False: write-zeroes instead, for
                                        # targets where a discard need not read zeros)
    qemu_io(uri, cmds)                  # run qemu-io commands on an NBD export (fails loudly)
    read_range(uri, off, length, tmp)   # bytes of an export, through qemu-img dd
    job_statuses(q, job_id)             # JOB_STATUS_CHANGE words of job_id seen so far
    job_gone(q, job_id)                 # the same, once the job's "null" arrived (the
                                        # events after BLOCK_JOB_COMPLETED; 30 s at most)

Discards are 4 KiB-aligned: on vmad's file target a discard reads back as zeros, which the
model records. On an RBD target librbd may skip a discard of part of an object, so those
tests ask for no discards.
"""

import os
import subprocess
import time


class Model:
    def __init__(self, src):
        with open(src, "rb") as f:
            self.data = bytearray(f.read())
        self.size = len(self.data)

    def random_ops(self, rng, n, discard=True):
        cmds = []
        for _ in range(n):
            kind = rng.random()
            if kind < 0.6:
                off = rng.randrange(0, self.size - 1)
                length = rng.choice([1, 512, 4096, 65536, 65536 * 3 + 17, rng.randrange(1, 300000)])
                length = min(length, self.size - off)
                pat = rng.randrange(1, 256)
                cmds.append("write -P %d %d %d" % (pat, off, length))
                self.data[off:off + length] = bytes([pat]) * length
            else:
                off = rng.randrange(0, self.size // 4096) * 4096
                length = min(rng.choice([4096, 65536, 4096 * 37, 1 << 20]), self.size - off)
                if kind < 0.8 or not discard:
                    cmds.append("write -z %d %d" % (off, length))
                else:
                    cmds.append("discard %d %d" % (off, length))
                self.data[off:off + length] = bytes(length)
        return cmds

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.data)


def qemu_io(uri, cmds, timeout=120):
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + [uri], capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    if p.returncode != 0 or "failed" in out or "error" in out.lower():
        raise AssertionError("qemu-io %s: %s" % (cmds[:3], out[-2000:]))
    return out


def read_range(uri, off, length, tmp):
    """length bytes at off (both multiples of 64 KiB) of the export."""
    bs = 65536
    assert off % bs == 0 and length % bs == 0
    if os.path.exists(tmp):
        os.unlink(tmp)
    subprocess.run(["qemu-img", "dd", "-f", "raw", "-O", "raw", "bs=%d" % bs,
                    "skip=%d" % (off // bs), "count=%d" % ((off + length) // bs),
                    "if=" + uri, "of=" + tmp], check=True, capture_output=True, timeout=120)
    with open(tmp, "rb") as f:
        return f.read()



def job_statuses(q, job_id):
    return [e["data"]["status"] for e in q.events
            if e["event"] == "JOB_STATUS_CHANGE" and e["data"]["id"] == job_id]


def job_gone(q, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q.ok("query-jobs")                       # collects the events sent before it
        st = job_statuses(q, job_id)
        if st and st[-1] == "null":
            return st
        time.sleep(0.05)
    raise AssertionError("job %s not dismissed in %d s: %r" % (job_id, timeout,
                                                               job_statuses(q, job_id)))
