#!/usr/bin/env bash
# `vma backup --vm-monitor`: the whole VM through the CLI. Its progress ends with the
# VM state line; `vma list` shows the stream exactly as the deployed tool prints it
# (VMSTATE: dev_id=N memory: SIZE, SIZE = the guest's RAM + 64 MiB reserved for the
# device state), and the config entry; `vma verify` reads it; `vma extract` writes
# vmstate.bin, a QEMU stream as long as what vmad received rounded up to a 64 KiB
# cluster (the zero padding past QEMU's end is ignored by its loader); the stored
# config names this QEMU's version and the machine type; `vma qemu-args` accepts it
# against the local qemu-system-x86_64.
set -u
. "$(dirname "$0")/vmstate.bash"

vm_setup
vm_boot vm
vm_wait_count vm 3 || fail "the guest did not start counting"
"$VMA" backup --qmp "$T/qmp.sock" --vm-monitor "$T/vm.qmp" --json "$T/vm.vma" \
    >"$T/status.json" 2>"$T/progress" || fail "vma backup --vm-monitor: $(cat "$T/progress")"
grep -E -q '^INFO: VM state: [0-9]+ bytes \(precopy\), guest paused for [0-9]+ ms$' "$T/progress" ||
    fail "no VM state line in the progress: $(cat "$T/progress")"
bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vmstate-bytes"])' "$T/status.json")

"$VMA" list "$T/vm.vma" >"$T/list" || fail "vma list"
mem=$((VM_MEM * 1024 * 1024 + 64 * 1024 * 1024))
grep -qx "VMSTATE: dev_id=2 memory: $mem" "$T/list" || fail "vma list: $(cat "$T/list")"
grep -qx "DEV: dev_id=1 size: 67108864 devname: drive-scsi0" "$T/list" || fail "vma list: $(cat "$T/list")"
"$VMA" verify -v "$T/vm.vma" >"$T/verify" || fail "vma verify -v"
"$VMA" extract "$T/vm.vma" "$T/x" >/dev/null || fail "vma extract"
size=$(stat -c %s "$T/x/vmstate.bin")
[ "$size" = $(((bytes + 65535) / 65536 * 65536)) ] ||
    fail "vmstate.bin has $size bytes for $bytes bytes of stream"
[ "$(head -c 4 "$T/x/vmstate.bin")" = QEVM ] || fail "vmstate.bin is no QEMU migration stream"
version=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p')
grep -qx "qemu-version: $version" "$T/x/vmabackup-vmstate.conf" &&
    grep -qx "ram: 1" "$T/x/vmabackup-vmstate.conf" &&
    grep -qx "memory: $((VM_MEM * 1024 * 1024))" "$T/x/vmabackup-vmstate.conf" &&
    grep -qx "cpus: 1" "$T/x/vmabackup-vmstate.conf" ||
    fail "the vmstate config: $(cat "$T/x/vmabackup-vmstate.conf")"
"$VMA" qemu-args "$T/x" >"$T/args" || fail "vma qemu-args against the local QEMU"
grep -q -- "-m ${VM_MEM}M -smp 1 -incoming" "$T/args" || fail "qemu-args: $(cat "$T/args")"
quit_vmad
echo PASS
