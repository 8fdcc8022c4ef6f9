#!/usr/bin/env bash
# A backup's config-file must be a regular file of at most 65535 bytes (docs/security.md,
# "Limits"): /dev/zero, a FIFO without writer, a large file are refused at once (vmad
# neither hangs nor reads forever on its main loop) and no archive is created.
. "$(dirname "$0")/limits.bash"

truncate -s 1M "$T/disk.raw"
mkfifo "$T/fifo"
head -c 65536 /dev/zero | tr '\0' x >"$T/big.conf"
start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/disk.raw"
wait_socket "$T/qmp.sock"
py "$T" <<'EOF' || fail "config-file limits"
import os, sys, time
from qmp import QMP, expect_error
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
for path, why in (("/dev/zero", "unable to read file"), (T + "/fifo", "unable to read file"),
                  (T + "/big.conf", "too large")):
    t = time.monotonic()
    r = q.cmd("backup", {"backup-file": T + "/out.vma", "config-file": path})
    expect_error(r, "GenericError")
    assert why in r["error"]["desc"], r
    assert time.monotonic() - t < 5, "config-file %s took %.1f s" % (path, time.monotonic() - t)
    assert not os.path.exists(T + "/out.vma")
q.ok("quit")
EOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC"
check_log
echo PASS
