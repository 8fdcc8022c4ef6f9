#!/usr/bin/env python3
"""backup-qmp.py — the QMP side of bench/backup-bench.sh and bench/backup-latency.sh.

Talks to vmad and to qemu-storage-daemon with tests/functional/qmp.py. Every subcommand
connects, negotiates, does one thing, prints one JSON object on stdout, and exits 0; on
any failure it prints the reason on stderr and exits 1.

vmad:
  vmad-backup SOCK TARGET [--max-workers N]   start a backup, wait for its end
        -> {"seconds": wall time from sending `backup` to BLOCK_JOB_COMPLETED,
            "status": the final query-backup}
  vmad-start SOCK TARGET [--max-workers N]    start a backup and return -> {"uuid"}
  vmad-status SOCK                            -> query-backup
  vmad-stop SOCK                              backup-cancel if still active, wait until
                                              it is not -> the final query-backup

qemu-storage-daemon:
  qsd-source SOCK IMAGE [--export NBDSOCK NAME]
        raw node "src" over a file node for IMAGE; with --export also start the NBD
        server on the UNIX socket NBDSOCK and export src writable as NAME
  qsd-backup SOCK KIND [--file PATH] [--size N] [--bps-write N] [--no-wait]
        add the target node "tgt" and run blockdev-backup src -> tgt (sync=full,
        x-perf max-workers 8 / max-chunk 1 MiB as in the reference capture); KIND is
          raw        raw node over a file node for PATH (create it first)
          null       null-co node of size N
          throttled  throttle filter (throttle-group bps-write N) over a raw node over PATH
        waits for BLOCK_JOB_COMPLETED -> {"seconds", "event"}; --no-wait returns once
        the command succeeded -> {}
  qsd-status SOCK                             -> query-jobs
  qsd-stop SOCK                               job-cancel every job, wait until none is
                                              left -> the jobs seen before the cancel
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "functional"))
from qmp import QMP, QMPError  # noqa: E402

JOB = "bench0"
X_PERF = {"max-workers": 8, "max-chunk": 1 << 20}


def connect(sock, timeout=30.0):
    q = QMP(sock, timeout=timeout)
    q.negotiate()
    return q


def out(obj):
    print(json.dumps(obj))


# ---- vmad ------------------------------------------------------------------------------

def backup_args(a):
    args = {"backup-file": a.target}
    if a.max_workers:
        args["max-workers"] = a.max_workers
    return args


def vmad_backup(a):
    q = connect(a.sock, a.timeout)
    t0 = time.monotonic()
    q.ok("backup", backup_args(a))
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=a.timeout)
    secs = time.monotonic() - t0
    st = q.ok("query-backup")
    if "error" in ev["data"] or st.get("status") != "done":
        sys.exit("vmad backup failed: %r %r" % (ev["data"], st))
    out({"seconds": secs, "status": st})


def vmad_start(a):
    q = connect(a.sock, a.timeout)
    out({"uuid": q.ok("backup", backup_args(a))["UUID"]})


def vmad_status(a):
    out(connect(a.sock, a.timeout).ok("query-backup"))


def vmad_stop(a):
    q = connect(a.sock, a.timeout)
    st = q.ok("query-backup")
    if st.get("status") == "active":
        q.ok("backup-cancel")
    deadline = time.monotonic() + a.timeout
    while st.get("status") == "active":
        if time.monotonic() > deadline:
            sys.exit("vmad backup still active %d s after backup-cancel" % a.timeout)
        time.sleep(0.05)
        st = q.ok("query-backup")
    out(st)


# ---- qemu-storage-daemon ---------------------------------------------------------------

def qsd_source(a):
    q = connect(a.sock, a.timeout)
    q.ok("blockdev-add", {"node-name": "src", "driver": "raw",
                          "file": {"driver": "file", "filename": a.image}})
    if a.export:
        nbdsock, name = a.export
        # QEMU 7.2 takes the legacy SocketAddress form here
        q.ok("nbd-server-start", {"addr": {"type": "unix", "data": {"path": nbdsock}}})
        q.ok("block-export-add", {"type": "nbd", "id": "exp0", "node-name": "src",
                                  "name": name, "writable": True})
    out({})


def qsd_backup(a):
    q = connect(a.sock, a.timeout)
    raw = {"driver": "raw", "file": {"driver": "file", "filename": a.file}}
    if a.kind == "raw":
        q.ok("blockdev-add", dict(raw, **{"node-name": "tgt"}))
    elif a.kind == "null":
        q.ok("blockdev-add", {"node-name": "tgt", "driver": "null-co", "size": a.size})
    else:
        q.ok("object-add", {"qom-type": "throttle-group", "id": "tg0",
                            "limits": {"bps-write": a.bps_write}})
        q.ok("blockdev-add", dict(raw, **{"node-name": "tgt-raw"}))
        q.ok("blockdev-add", {"node-name": "tgt", "driver": "throttle",
                              "throttle-group": "tg0", "file": "tgt-raw"})
    t0 = time.monotonic()
    q.ok("blockdev-backup", {"job-id": JOB, "device": "src", "target": "tgt",
                             "sync": "full", "x-perf": X_PERF})
    if a.no_wait:
        out({})
        return
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=a.timeout)
    secs = time.monotonic() - t0
    if "error" in ev["data"] or ev["data"]["offset"] != ev["data"]["len"]:
        sys.exit("qemu-storage-daemon backup failed: %r" % ev["data"])
    while True:  # auto-dismiss: the job ends with concluded -> null
        e = q.event("JOB_STATUS_CHANGE", timeout=a.timeout)
        if e["data"]["status"] == "null":
            break
    out({"seconds": secs, "event": ev["data"]})


def qsd_status(a):
    out(connect(a.sock, a.timeout).ok("query-jobs"))


def qsd_stop(a):
    q = connect(a.sock, a.timeout)
    jobs = q.ok("query-jobs")
    for j in jobs:
        if j["status"] not in ("concluded", "null", "aborting"):
            try:
                q.ok("job-cancel", {"id": j["id"]})
            except QMPError:
                pass  # it ended meanwhile
    deadline = time.monotonic() + a.timeout
    while q.ok("query-jobs"):
        if time.monotonic() > deadline:
            sys.exit("qemu-storage-daemon jobs still there %d s after job-cancel" % a.timeout)
        time.sleep(0.05)
    out(jobs)


def main():
    p = argparse.ArgumentParser(description="QMP driver for the backup benchmarks")
    p.add_argument("--timeout", type=float, default=3600.0)
    sub = p.add_subparsers(dest="cmd", required=True)

    for name in ("vmad-backup", "vmad-start"):
        s = sub.add_parser(name)
        s.add_argument("sock")
        s.add_argument("target")
        s.add_argument("--max-workers", type=int, default=0)
    sub.add_parser("vmad-status").add_argument("sock")
    sub.add_parser("vmad-stop").add_argument("sock")

    s = sub.add_parser("qsd-source")
    s.add_argument("sock")
    s.add_argument("image")
    s.add_argument("--export", nargs=2, metavar=("NBDSOCK", "NAME"))
    s = sub.add_parser("qsd-backup")
    s.add_argument("sock")
    s.add_argument("kind", choices=("raw", "null", "throttled"))
    s.add_argument("--file")
    s.add_argument("--size", type=int)
    s.add_argument("--bps-write", type=int)
    s.add_argument("--no-wait", action="store_true")
    sub.add_parser("qsd-status").add_argument("sock")
    sub.add_parser("qsd-stop").add_argument("sock")

    a = p.parse_args()
    if a.cmd == "qsd-backup":
        if a.kind in ("raw", "throttled") and not a.file:
            p.error("qsd-backup %s needs --file" % a.kind)
        if a.kind == "null" and not a.size:
            p.error("qsd-backup null needs --size")
        if a.kind == "throttled" and not a.bps_write:
            p.error("qsd-backup throttled needs --bps-write")
    fn = {
        "vmad-backup": vmad_backup, "vmad-start": vmad_start,
        "vmad-status": vmad_status, "vmad-stop": vmad_stop,
        "qsd-source": qsd_source, "qsd-backup": qsd_backup,
        "qsd-status": qsd_status, "qsd-stop": qsd_stop,
    }[a.cmd]
    try:
        fn(a)
    except QMPError as e:
        sys.exit("%s: %s" % (a.cmd, e))
    except (OSError, TimeoutError) as e:
        sys.exit("%s: %s" % (a.cmd, e))


if __name__ == "__main__":
    main()
