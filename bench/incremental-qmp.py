#!/usr/bin/env python3
"""incremental-qmp.py — the QMP side of bench/incremental-bench.sh (vmad and
qemu-storage-daemon), with tests/functional/qmp.py. Each subcommand connects, does one
thing, prints one JSON object on stdout and exits 0; on failure it prints why on stderr
and exits 1.

  bitmap-add SOCK NODE NAME            block-dirty-bitmap-add (64 KiB granularity)
  bitmap-count SOCK NODE NAME          -> {"count": dirty bytes}
  bitmap-remove SOCK NODE NAME
  quit SOCK                            quit (the daemon exits)
  vmad-backup SOCK TARGET [--bitmap NAME]
        vmad's backup (with the bitmap: on-success) -> {"seconds": from the command to
        BLOCK_JOB_COMPLETED, "durable": plus an fdatasync of TARGET right after it,
        "dirty", "reused", "total"}; --max-workers N passes max-workers
  qsd-setup SOCK IMAGE NBDSOCK         raw node "src" over IMAGE, exported writable over
                                       NBD as "src" on NBDSOCK
  qsd-backup SOCK TARGET SYNC [--bitmap NAME]
        raw target node over TARGET (a file of the image's size), blockdev-backup
        src -> it with SYNC (full or incremental), x-perf max-workers 8 / max-chunk 1 MiB
        as in bench/backup-qmp.py -> {"seconds", "durable" (as for vmad-backup), "len",
        "del_seconds": the blockdev-del of the target after the job}
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "functional"))
from qmp import QMP, QMPError  # noqa: E402

X_PERF = {"max-workers": 8, "max-chunk": 1 << 20}


def connect(sock):
    q = QMP(sock, timeout=3600.0)
    q.negotiate()
    return q


def out(obj):
    print(json.dumps(obj))


def bitmap_add(a):
    connect(a.sock).ok("block-dirty-bitmap-add",
                       {"node": a.node, "name": a.name, "granularity": 65536})
    out({})


def bitmap_count(a):
    q = connect(a.sock)
    for n in q.ok("query-named-block-nodes") if a.qsd else q.ok("query-block"):
        info = n if a.qsd else n["inserted"]
        for b in info.get("dirty-bitmaps", []):
            if info["node-name"] == a.node and b.get("name") == a.name:
                out({"count": b["count"]})
                return
    sys.exit("bitmap %s not found on %s" % (a.name, a.node))


def bitmap_remove(a):
    connect(a.sock).ok("block-dirty-bitmap-remove", {"node": a.node, "name": a.name})
    out({})


def flush(path):
    """fdatasync PATH (its data and what reading it back needs) -> seconds taken"""
    t0 = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - t0


def vmad_backup(a):
    q = connect(a.sock)
    args = {"backup-file": a.target}
    if a.bitmap:
        args["bitmap"] = a.bitmap
    if a.max_workers:
        args["max-workers"] = a.max_workers
    t0 = time.monotonic()
    q.ok("backup", args)
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=3600.0)
    secs = time.monotonic() - t0
    durable = secs + flush(a.target)
    st = q.ok("query-backup")
    if "error" in ev["data"] or st.get("status") != "done":
        sys.exit("vmad backup failed: %r %r" % (ev["data"], st))
    out({"seconds": secs, "durable": durable, "dirty": st.get("dirty"),
         "reused": st.get("reused"), "total": st.get("total")})


def qsd_setup(a):
    q = connect(a.sock)
    q.ok("blockdev-add", {"node-name": "src", "driver": "raw",
                          "file": {"driver": "file", "filename": a.image}})
    q.ok("nbd-server-start", {"addr": {"type": "unix", "data": {"path": a.nbdsock}}})
    q.ok("block-export-add", {"type": "nbd", "id": "exp0", "node-name": "src",
                              "name": "src", "writable": True})
    out({})


def quit_daemon(a):
    q = connect(a.sock)
    q.ok("quit")
    out({})


def qsd_backup(a):
    q = connect(a.sock)
    q.ok("blockdev-add", {"node-name": "tgt", "driver": "raw",
                          "file": {"driver": "file", "filename": a.target}})
    args = {"job-id": "inc0", "device": "src", "target": "tgt", "sync": a.sync,
            "x-perf": X_PERF}
    if a.bitmap:
        args["bitmap"] = a.bitmap
    t0 = time.monotonic()
    q.ok("blockdev-backup", args)
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=3600.0)
    secs = time.monotonic() - t0
    # the target's data made durable as vmad's archive is before its event (QEMU's job
    # syncs nothing; without this, blockdev-del would flush it, untimed, on close)
    durable = secs + flush(a.target)
    if "error" in ev["data"] or ev["data"]["offset"] != ev["data"]["len"]:
        sys.exit("qemu-storage-daemon backup failed: %r" % ev["data"])
    while True:  # auto-dismiss: concluded -> null, then the target can go
        e = q.event("JOB_STATUS_CHANGE", timeout=3600.0)
        if e["data"]["status"] == "null":
            break
    t1 = time.monotonic()
    q.ok("blockdev-del", {"node-name": "tgt"})
    out({"seconds": secs, "durable": durable, "del_seconds": time.monotonic() - t1,
         "len": ev["data"]["len"]})


def main():
    p = argparse.ArgumentParser(description="QMP driver of bench/incremental-bench.sh")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("bitmap-add", "bitmap-count", "bitmap-remove"):
        s = sub.add_parser(name)
        s.add_argument("sock")
        s.add_argument("node")
        s.add_argument("name")
        s.add_argument("--qsd", action="store_true")
    s = sub.add_parser("quit")
    s.add_argument("sock")
    s = sub.add_parser("vmad-backup")
    s.add_argument("sock")
    s.add_argument("target")
    s.add_argument("--bitmap")
    s.add_argument("--max-workers", type=int)
    s = sub.add_parser("qsd-setup")
    s.add_argument("sock")
    s.add_argument("image")
    s.add_argument("nbdsock")
    s = sub.add_parser("qsd-backup")
    s.add_argument("sock")
    s.add_argument("target")
    s.add_argument("sync", choices=("full", "incremental"))
    s.add_argument("--bitmap")
    a = p.parse_args()
    fn = {"bitmap-add": bitmap_add, "bitmap-count": bitmap_count,
          "bitmap-remove": bitmap_remove, "vmad-backup": vmad_backup,
          "qsd-setup": qsd_setup, "qsd-backup": qsd_backup, "quit": quit_daemon}[a.cmd]
    try:
        fn(a)
    except (QMPError, OSError, TimeoutError) as e:
        sys.exit("%s: %s" % (a.cmd, e))


if __name__ == "__main__":
    main()
