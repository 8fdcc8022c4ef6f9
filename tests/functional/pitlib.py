"""pitlib.py — helpers of the live-backup end-to-end tests (backup-pit.sh,
backup-failures.sh, backup-guest.sh): drive tests/tools/pit-writer, run a backup over
QMP and wait for it, run pit-check.py, count a process's descriptors and threads.

    w = Writer(tool, log, uris, seed=1)     # starts pit-writer, waits for "ready"
    w.prefill(); w.start(); w.wait_acked(200)
    sent, uuid, returned = start_backup(q, {...})   # CLOCK_MONOTONIC ns around the command
    st = wait_backup(q)                     # polls query-backup until not active
    res = w.stop()                          # {"ops":..., "errors":..., "maxgen":...}

Python's time.monotonic_ns() reads CLOCK_MONOTONIC, the clock pit-writer logs with.
"""
import os
import select
import subprocess
import time


class WriterError(Exception):
    pass


class Writer:
    def __init__(self, tool, log, uris, seed=1, conns=2, depth=4, extra=(), timeout=60):
        self.timeout = timeout
        self.log = log
        argv = [tool, "--log", log, "--seed", str(seed), "--conns", str(conns),
                "--depth", str(depth)] + list(extra) + list(uris)
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""
        self.rc = None
        line = self._line()
        if not line.startswith("ready "):
            raise WriterError("pit-writer did not get ready: %r" % line)
        # the log's timestamps are comparable with ours only if both read one clock
        t1 = time.monotonic_ns()
        t = int(self.cmd("clock", "clock ").split()[1])
        t2 = time.monotonic_ns()
        if not t1 <= t <= t2:
            raise WriterError("pit-writer's clock %d is not between our readings %d and %d"
                              % (t, t1, t2))

    def _line(self):
        deadline = time.monotonic() + self.timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WriterError("pit-writer: no answer within %d s" % self.timeout)
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    rc = self.p.wait()
                    raise WriterError("pit-writer exited (status %d); have %r" % (rc, self.buf))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, c, want):
        self.p.stdin.write((c + "\n").encode())
        self.p.stdin.flush()
        line = self._line()
        if not line.startswith(want):
            raise WriterError("pit-writer %s: %r" % (c, line))
        return line

    def prefill(self):
        self.cmd("prefill", "prefilled")

    def start(self):
        self.cmd("start", "started")

    def stats(self):
        f = dict(kv.split("=") for kv in self.cmd("stats", "stats ").split()[1:])
        return int(f["acked"]), int(f["errors"])

    def wait_acked(self, n, timeout=60):
        """Until at least n requests (in total) were acknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            acked, errors = self.stats()
            if errors:
                raise WriterError("pit-writer: %d requests failed" % errors)
            if acked >= n:
                return acked
            if time.monotonic() > deadline:
                raise WriterError("pit-writer: only %d of %d requests acknowledged in %d s"
                                  % (acked, n, timeout))
            time.sleep(0.02)

    def stop(self):
        line = self.cmd("stop", "stopped ")
        self.p.stdin.close()
        self.rc = self.p.wait(timeout=self.timeout)
        res = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        if self.rc != 0 or res["errors"]:
            raise WriterError("pit-writer: exit status %d, %d failed requests (see its stderr)"
                              % (self.rc, res["errors"]))
        return res

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def start_backup(q, args):
    """Send backup; return (sent_ns, uuid, returned_ns). Raises on an error reply."""
    sent = time.monotonic_ns()
    r = q.cmd("backup", args)
    returned = time.monotonic_ns()
    if "error" in r:
        raise AssertionError("backup %r: %r" % (args, r))
    return sent, r["return"]["UUID"], returned


def wait_backup(q, timeout=120, poll=0.02):
    deadline = time.monotonic() + timeout
    while True:
        st = q.ok("query-backup")
        if st.get("status") != "active":
            return st
        if time.monotonic() > deadline:
            raise AssertionError("backup still active after %d s: %r" % (timeout, st))
        time.sleep(poll)


def pit_check(srcdir, *args):
    """Run pit-check.py; (returncode, stdout + stderr)."""
    p = subprocess.run(["python3", os.path.join(srcdir, "tests/functional/pit-check.py")]
                       + [str(a) for a in args], capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_list(pid):
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def wait_baseline(pid, fds, threads, timeout=10):
    """Until pid has no more descriptors and threads than before (the job's threads end
    shortly after query-backup reports the end). Returns (fds now, threads now)."""
    deadline = time.monotonic() + timeout
    while True:
        f, t = fd_list(pid), thread_count(pid)
        if len(f) <= len(fds) and t <= threads:
            return f, t
        if time.monotonic() > deadline:
            extra = {k: v for k, v in f.items() if k not in fds or fds[k] != v}
            raise AssertionError("vmad leaks: %d descriptors (was %d; new: %r), %d threads "
                                 "(was %d)" % (len(f), len(fds), extra, t, threads))
        time.sleep(0.05)
