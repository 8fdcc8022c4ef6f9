#!/usr/bin/env bash
# backup with vm-monitor of a VM that is paused: refused (the backup ends with status
# error naming the run state) before QEMU is changed in any way; the VM stays paused as
# it was, vmad goes on, and once the VM runs again the same backup succeeds.
set -u
. "$(dirname "$0")/vmstate.bash"

vm_setup
vm_boot vm
vm_wait_count vm 3 || fail "the guest did not start counting"
vm_qmp vm stop >/dev/null || fail "stop the VM"
vm_qmp vm query-migrate-capabilities >"$T/caps.before" || fail "query-migrate-capabilities"

py "$T" <<'EOF' || fail "backup of a paused VM"
import sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=30)
q.negotiate()
q.ok("backup", {"backup-file": T + "/x.vma", "vm-monitor": T + "/vm.qmp"})
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.05)
st = q.ok("query-backup")
want = ("vm-monitor %s/vm.qmp: the VM is not running (status: paused); a backup with its "
        "RAM state needs a running VM" % T)
assert st["status"] == "error" and st["errmsg"] == want, st
q.close()
EOF
status=$(vm_qmp vm query-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
[ "$status" = paused ] || fail "the paused VM is now '$status'"
vm_qmp vm query-migrate-capabilities | cmp -s - "$T/caps.before" ||
    fail "the refused backup changed QEMU's migration capabilities"
[ ! -e "$T/x.vma" ] || fail "the refused backup left its archive"
n=$(vm_count vm)
vm_qmp vm cont >/dev/null || fail "cont"
vm_wait_count vm $((n + 2)) || fail "the VM does not count after cont"

py "$T" <<'EOF' || fail "backup once the VM runs"
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
vm_qmp vm query-migrate-capabilities | cmp -s - "$T/caps.before" ||
    fail "the backup did not put QEMU's migration capabilities back"
n=$(vm_count vm)
vm_wait_count vm $((n + 2)) || fail "the VM does not count after the backup"
quit_vmad
echo PASS
