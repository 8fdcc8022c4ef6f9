#!/usr/bin/env bash
# vma create to exec: targets (an archive through zstd, a config-only archive), each read
# back exactly.
. "$(dirname "$0")/roundtrip.bash"

expect_ok create -c "$I/qemu-server.conf" "exec:zstd -q >'$T/d.vma.zst'" \
    drive-scsi0="$I/zeroes.raw"
expect_ok extract "$T/d.vma.zst" "$T/d"
cmp "$T/d/disk-drive-scsi0.raw" "$I/zeroes.raw" || fail "exec: round trip"
expect_ok create -c "$I/qemu-server.conf" "exec:cat >'$T/e.vma'"
expect_ok verify "$T/e.vma"
"$VMA" config "$T/e.vma" | cmp - "$I/qemu-server.conf" || fail "diskless config"
exit 0
