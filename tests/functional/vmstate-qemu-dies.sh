#!/usr/bin/env bash
# backup with vm-monitor while the QEMU it migrates dies (SIGKILL once the first bytes
# of its state arrived): the backup fails with status error, removes its archive and
# leaves vmad as it was: the disk has no filter left (a plain backup of it succeeds) and
# NBD still serves it.
set -u
. "$(dirname "$0")/vmstate.bash"

vm_setup
# a larger guest: its migration lasts long enough to be killed in the middle
VM_MEM=512 vm_boot vm
vm_wait_count vm 3 || fail "the guest did not start counting"
export VM_PID

py "$T" <<'EOF' || fail "backup while QEMU dies"
import os, signal, sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=30)
q.negotiate()
q.ok("backup", {"backup-file": T + "/x.vma", "vm-monitor": T + "/vm.qmp"})
deadline = time.time() + 60
while True:
    st = q.ok("query-backup")
    if st.get("vmstate-bytes", 0) > 0 or st["status"] != "active" or time.time() > deadline:
        break
    time.sleep(0.002)
assert st["status"] == "active", "the migration ended before it could be killed: %r" % st
os.kill(int(os.environ["VM_PID"]), signal.SIGKILL)
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.05)
st = q.ok("query-backup")
assert st["status"] == "error", st
assert st["errmsg"].startswith("vm-monitor"), st
print("backup failed as it should: %s (after %d bytes of state)" % (st["errmsg"],
                                                                   st["vmstate-bytes"]))
assert not os.path.exists(T + "/x.vma"), "the failed backup left its archive"
q.ok("backup", {"backup-file": T + "/y.vma"})
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.05)
assert q.ok("query-backup")["status"] == "done"
q.close()
EOF
wait "$VM_PID" 2>/dev/null
"$VMA" verify "$T/y.vma" || fail "the plain backup after the failure"
qemu-io -f raw "nbd+unix:///drive-scsi0?socket=$T/nbd.sock" -c 'read 0 4k' >/dev/null ||
    fail "the NBD export no longer serves the disk"
quit_vmad
echo PASS
