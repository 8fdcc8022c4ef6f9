#!/usr/bin/env bash
# A whole-VM backup resumed in a new QEMU. The guest counts in RAM and writes every count
# to its disk (vmad, over NBD) before printing it; at each step it checks that the disk
# holds its last count and not the next one. A backup with vm-monitor (the guest QEMU's
# QMP socket) runs while it counts; then the original VM is stopped for good, the archive
# is verified and extracted, `vma qemu-args` gives the restore's QEMU arguments, and a new
# QEMU starts on the extracted disk with -incoming from vmstate.bin. The restored guest
# must go on counting from the backup's instant: its first count is the disk's last
# record (or the one after), never 1, and its own check of disk against RAM passes for
# the further steps (steps=... makes it end with GUEST-RESULT ok).
set -u
. "$(dirname "$0")/vmstate.bash"

vm_setup
vm_boot orig
vm_wait_count orig 5 || fail "the guest did not start counting"
before=$(vm_count orig)

py "$T" <<'EOF' || fail "backup with vm-monitor"
import sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
uuid = q.ok("backup", {"backup-file": T + "/vm.vma", "vm-monitor": T + "/orig.qmp"})["UUID"]
deadline = time.time() + 240
while True:
    st = q.ok("query-backup")
    if st["status"] != "active" or time.time() > deadline:
        break
    time.sleep(0.2)
assert st["status"] == "done", st
assert st["vmstate-method"] == "precopy", st
assert st["vmstate-bytes"] > 1 << 20, st
assert 0 <= st["vmstate-downtime"] < 1000, st
print("backup done: %d bytes of VM state, downtime %d ms" % (st["vmstate-bytes"],
                                                             st["vmstate-downtime"]))
q.close()
EOF

# the original goes on running after the backup
n=$(vm_count orig)
vm_wait_count orig $((n + 3)) || fail "the original VM stopped counting after the backup"
[ "$(vm_qmp orig query-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = running ] ||
    fail "the original VM is not running after the backup"
kill -9 "$VM_PID"
wait "$VM_PID" 2>/dev/null
after=$(vm_count orig)

"$VMA" list "$T/vm.vma" >"$T/list" || fail "vma list"
grep -E -q '^VMSTATE: dev_id=2 memory: [0-9]+$' "$T/list" || fail "no VMSTATE line: $(cat "$T/list")"
grep -q '^CFG: size: [0-9]* name: vmabackup-vmstate.conf$' "$T/list" ||
    fail "no vmstate config entry: $(cat "$T/list")"
"$VMA" verify "$T/vm.vma" || fail "vma verify"
"$VMA" extract "$T/vm.vma" "$T/x" >/dev/null || fail "vma extract"
head -c 8 "$T/x/vmstate.bin" | od -An -tx1 | grep -q '51 45 56 4d 00 00 00 03' ||
    fail "vmstate.bin is no QEMU migration stream"
grep -q '^runningmachine: pc-i440fx-' "$T/x/vmabackup-vmstate.conf" ||
    fail "no machine type in the vmstate config: $(cat "$T/x/vmabackup-vmstate.conf")"

last=$(disk_last_record "$T/x/disk-drive-scsi0.raw")
[ "$last" -ge "$before" ] && [ "$last" -le "$after" ] ||
    fail "the archived disk's last count $last is outside $before..$after"

args=$("$VMA" qemu-args "$T/x") || fail "vma qemu-args"
echo "restore arguments: $args"
eval "set -- $args"
cp --sparse=always "$T/x/disk-drive-scsi0.raw" "$T/restored.raw"
VM_DISK="driver=file,node-name=disk0,filename=$T/restored.raw"
t0=$SECONDS
vm_boot restored "$@"
# it checks its disk against its RAM before every step: five more steps must pass
vm_wait_count restored $((last + 5)) || fail "the restored guest did not go on counting"
kill -9 "$VM_PID"
wait "$VM_PID" 2>/dev/null
log=$(tr -d '\r' <"$T/restored.log")
grep -q '^GUEST-READY' <<<"$log" && fail "the restored guest booted afresh instead of resuming"
grep -a 'GUEST-RESULT' <<<"$log" && fail "the restored guest's check failed"
first=$(vm_first_count restored)
[ "$first" = "$last" ] || [ "$first" = $((last + 1)) ] ||
    fail "the restored guest resumed at count $first, the archived disk's last record is $last"
echo "resumed at count $first (disk's last record $last, original ran $before..$after) in $((SECONDS - t0)) s"
quit_vmad
echo PASS
