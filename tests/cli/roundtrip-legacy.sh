#!/usr/bin/env bash
# vma create in the legacy positional form: default device names (disk0), a named device
# and a vmstate, each extracted bit for bit.
. "$(dirname "$0")/roundtrip.bash"

expect_ok create -c "$I/qemu-server.conf" "$T/b.vma" "$I/odd-4097.raw" \
    drive-virtio0="$I/random.raw" vmstate="$I/vmstate.raw"
expect_ok list "$T/b.vma"
printf '%s\n' "$out" | grep -qx "DEV: dev_id=1 size: 4097 devname: disk0" || fail "legacy: $out"
printf '%s\n' "$out" | grep -qx "VMSTATE: dev_id=3 memory: 74196" || fail "vmstate: $out"
expect_ok extract "$T/b.vma" "$T/b"
cmp "$T/b/disk-disk0.raw" "$I/odd-4097.raw" || fail "disk0"
cmp "$T/b/disk-drive-virtio0.raw" "$I/random.raw" || fail "virtio0"
cmp "$T/b/vmstate.bin" "$I/vmstate.raw" || fail "vmstate"
exit 0
