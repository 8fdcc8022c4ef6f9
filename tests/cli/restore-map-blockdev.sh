#!/usr/bin/env bash
# Block devices (a loop device: only as root), both directions: vma create reads a block
# device completely (no hole information), and a restore map writes into one, zeroing
# the zero blocks when asked (BLKZEROOUT or zeros).
. "$(dirname "$0")/restore-map.bash"

[ "$(id -u)" -eq 0 ] || skip "SKIP: loop devices need root"
requires losetup
fill_ff "$T/blk.img" 1048576
L=$(losetup -f --show "$T/blk.img" 2>/dev/null) && [ -b "$L" ] ||
    skip "SKIP: no loop device could be set up"
# detach only what still belongs to our image file
on_exit "losetup -n -O NAME -j '$T/blk.img' | xargs -r -n1 losetup -d"
run_map "$T/rb" "1:drive-scsi0=$L
skip=drive-scsi1
"
[ "$rc" -eq 0 ] || fail "restore into block device $L: $err"
cmp "$L" "$I/a.raw" || fail "block device restore with write-zeros 1"
check "create from a block device" "$VMA" create "$T/blk.vma" drive-scsi0="$L"
expect_ok extract "$T/blk.vma" "$T/blkx"
cmp "$T/blkx/disk-drive-scsi0.raw" "$I/a.raw" || fail "create from a block device"
exit 0
