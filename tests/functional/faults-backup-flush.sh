#!/usr/bin/env bash
# A failing flush (tests/faultinj/faultinj.c: every fdatasync of f.raw fails) is an error
# for the NBD client, and only for that request: a write in qemu-io's default
# write-through mode (FUA), and an explicit FLUSH after a plain write; later reads and
# writes work, the data is on the disk, descriptors go back to the baseline, and vmad
# exits cleanly.
. "$(dirname "$0")/faults-backup.bash"

# shellcheck disable=SC2046
faulty "$RULES" start_vmad $(vmad_args)
wait_socket "$T/qmp.sock"

py "$T" "$VMAD_PID" "$FAULT_LOG" <<'EOF' || fail "failing flushes over NBD"
import os, sys
from faultsbackup import Faults

f = Faults(sys.argv[1], int(sys.argv[2]), sys.argv[3])
q, T = f.q, f.T
qemu_io, faults, disk_is, wait_fds = f.qemu_io, f.faults, f.disk_is, f.wait_fds

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
wait_fds()
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exited with status $VMAD_RC"
check_log
echo PASS
