#!/usr/bin/env bash
# Fault injection into vmad (tests/faultinj/faultinj.c) while qemu-io writes over NBD: a
# backup whose archive write fails (ENOSPC, EIO), whose final flush fails, whose
# background read of a disk fails, whose copy-before-write read fails, or whose
# fleecing file is full, ends with status "error" and an errmsg naming the cause; its
# file is removed; every guest write succeeds and is on the disk; descriptors go back to
# the baseline. Afterwards vmad goes on serving and the next backup is complete and
# correct; it exits cleanly (in a sanitizer build: no leaks).
. "$(dirname "$0")/faults-backup.bash"

# shellcheck disable=SC2046
faulty "$RULES" start_vmad $(vmad_args)
wait_socket "$T/qmp.sock"

py "$T" "$VMAD_PID" "$FAULT_LOG" <<'EOF' || fail "backups with injected faults"
import os, sys
from faultsbackup import Faults

f = Faults(sys.argv[1], int(sys.argv[2]), sys.argv[3])
q, T = f.q, f.T
qemu_io, faults, disk_is, wait_fds = f.qemu_io, f.faults, f.disk_is, f.wait_fds

def failing_backup(args, guest_dev, guest_name, pattern, fault, errmsg_has):
    """Start a backup, write the whole disk over NBD meanwhile, expect a clean failure."""
    before = faults(fault)
    q.ok("backup", args)
    qemu_io(guest_dev, "write -P 0x%02x 0 %d" % (pattern, os.path.getsize(
        "%s/%s.raw" % (T, guest_name))))
    st = f.wait_done()
    assert st["status"] == "error", st
    assert errmsg_has in st.get("errmsg", ""), "errmsg %r lacks %r" % (st.get("errmsg"),
                                                                      errmsg_has)
    assert faults(fault) > before, "the fault %r was not injected" % fault
    disk_is(guest_name, pattern)
    assert os.listdir(T + "/out") == [], os.listdir(T + "/out")
    assert os.listdir(T + "/fleece") == [], os.listdir(T + "/fleece")
    wait_fds()

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

# vmad still serves, and a backup now is complete and exact
wait_fds()
qemu_io("drive-scsi0", "write -P 0x31 1M 1M", "read -P 0x31 1M 1M")
snap = f.snapshot()
good = T + "/good.vma"
q.ok("backup", {"backup-file": good})
st = f.wait_done()
assert st["status"] == "done", st
f.check_archive(good, snap, T + "/x")
wait_fds()
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exited with status $VMAD_RC"
check_log
echo PASS
