#!/usr/bin/env bash
# backup-cancel while a finished backup is being stored (tests/faultinj/faultinj.c makes
# the slow steps slower, mode=delay): what query-backup reports and what is on disk
# always agree.
#   * cancel during the archive's final fdatasync (under its temporary name): the
#     backup ends "error" / "backup canceled", nothing is left in the directory, and
#     the change bitmap it used gets its bits back (the next incremental has them);
#   * cancel during the directory's fsync, after the rename: too late, the backup is
#     "done", the archive stands under its name and verifies;
# Both fail without the output's commit point (vma-output.c: woken or committed): the
# first kept the archive, the second reported "backup canceled" for a stored archive.
. "$(dirname "$0")/faults-backup.bash"

RULES="op=fdatasync,path=*/out/.slow-*.vma.tmp-*,mode=delay,ms=1500"
RULES+=";op=fsync,path=*/out,if=$T/arm-dirsync,mode=delay,ms=1500"

# shellcheck disable=SC2046
faulty "$RULES" start_vmad $(vmad_args)
wait_socket "$T/qmp.sock"

py "$T" "$VMAD_PID" "$FAULT_LOG" <<'EOF' || fail "backup-cancel while a backup is stored"
import os, subprocess, sys, time
from faultsbackup import Faults

f = Faults(sys.argv[1], int(sys.argv[2]), sys.argv[3])
q, T = f.q, f.T

def cancel_when(fault, args):
    """Start a backup, backup-cancel as soon as the fault log shows the delayed call."""
    before = f.faults(fault)
    q.ok("backup", args)
    deadline = time.monotonic() + 30
    while f.faults(fault) == before:
        assert time.monotonic() < deadline, "the delayed call %r never came" % fault
        time.sleep(0.01)
    assert q.ok("query-backup")["status"] == "active"
    assert q.ok("backup-cancel") == {}
    return f.wait_done()

def bitmap_count(node, name):
    for b in q.ok("query-block"):
        if b.get("inserted", {}).get("node-name") == node:
            return {x["name"]: x for x in b["inserted"]["dirty-bitmaps"]}[name]["count"]
    raise AssertionError("no node " + node)

# a base for the bitmap, then one changed cluster
q.ok("block-dirty-bitmap-add", {"node": "drive-scsi0", "name": "b0"})
q.ok("backup", {"backup-file": T + "/base.vma", "devlist": "drive-scsi0", "bitmap": "b0"})
assert f.wait_done()["status"] == "done"
f.qemu_io("drive-scsi0", "write -P 0x41 1M 64k")
assert bitmap_count("drive-scsi0", "b0") == 65536

# cancelled during the archive's fdatasync: nothing kept, the bits come back
st = cancel_when(".slow-1.vma.tmp-", {"backup-file": T + "/out/slow-1.vma",
                                       "devlist": "drive-scsi0", "bitmap": "b0"})
assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
assert os.listdir(T + "/out") == [], os.listdir(T + "/out")
assert bitmap_count("drive-scsi0", "b0") == 65536, "the cancelled backup lost the bits"

# cancelled during the directory's fsync, after the rename: done, and the archive stands
open(T + "/arm-dirsync", "w").close()
st = cancel_when(T + "/out thread=", {"backup-file": T + "/out/late-1.vma",
                                       "devlist": "drive-scsi0", "bitmap": "b0"})
os.unlink(T + "/arm-dirsync")
assert st["status"] == "done" and "errmsg" not in st, st
assert os.listdir(T + "/out") == ["late-1.vma"], os.listdir(T + "/out")
assert bitmap_count("drive-scsi0", "b0") == 0, "a stored incremental must reset the bitmap"
subprocess.run([f.vma, "verify", "--base", T + "/base.vma", T + "/out/late-1.vma"],
               check=True)
subprocess.run([f.vma, "extract", "--base", T + "/base.vma", T + "/out/late-1.vma",
                T + "/x"], check=True, stdout=subprocess.DEVNULL)
with open(T + "/x/disk-drive-scsi0.raw", "rb") as a, open(T + "/a.raw", "rb") as b:
    assert a.read() == b.read(), "the chain does not restore the disk"
events = [e["event"] for e in q.events]
assert "BLOCK_JOB_CANCELLED" in events and "BLOCK_JOB_COMPLETED" in events, events
f.wait_fds()
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exited with status $VMAD_RC"
check_log
echo PASS
