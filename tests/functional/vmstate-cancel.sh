#!/usr/bin/env bash
# backup-cancel while vmad migrates the VM's state: the backup ends with "backup
# canceled", vmad cancels QEMU's migration (query-migrate: cancelled), the VM goes on
# running and counting (never left stopped or in postmigrate), QEMU's migration settings
# are back as they were, and a next whole-VM backup of it succeeds.
set -u
. "$(dirname "$0")/vmstate.bash"

vm_setup
VM_MEM=512 vm_boot vm
vm_wait_count vm 3 || fail "the guest did not start counting"
vm_qmp vm query-migrate-parameters >"$T/params.before" || fail "query-migrate-parameters"

py "$T" <<'EOF' || fail "cancel during the migration"
import sys, time
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
assert st["status"] == "active", "the migration ended before it could be cancelled: %r" % st
q.ok("backup-cancel")
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.05)
st = q.ok("query-backup")
assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
q.close()
vm = QMP(T + "/vm.qmp", timeout=30)
vm.negotiate()
mig = vm.ok("query-migrate")
assert mig["status"] == "cancelled", mig
assert vm.ok("query-status")["status"] == "running"
vm.close()
EOF
vm_qmp vm query-migrate-parameters | cmp -s - "$T/params.before" ||
    fail "QEMU's migration parameters were not put back"
n=$(vm_count vm)
vm_wait_count vm $((n + 2)) || fail "the VM does not count after the cancel"
[ ! -e "$T/x.vma" ] || fail "the cancelled backup left its archive"
py "$T" <<'EOF' || fail "a backup after the cancel"
import sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=30)
q.negotiate()
q.ok("backup", {"backup-file": T + "/y.vma", "vm-monitor": T + "/vm.qmp"})
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.1)
st = q.ok("query-backup")
assert st["status"] == "done", st
q.close()
EOF
"$VMA" verify "$T/y.vma" || fail "verify the backup after the cancel"
quit_vmad
echo PASS
