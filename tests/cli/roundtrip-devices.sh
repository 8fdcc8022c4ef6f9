#!/usr/bin/env bash
# vma create → vma extract gives back every image bit for bit: random, zero-heavy, sparse
# and odd-sized images as eight devices of one archive (the -d form), with two configs;
# the extracted sparse image is sparse and the archive small.
. "$(dirname "$0")/roundtrip.bash"

expect_ok create -c "$I/qemu-server.conf" -c "$I/qemu-server.fw" "$T/a.vma" \
    -d format=raw:drive-scsi0="$I/random.raw" -d format=raw:drive-scsi1="$I/zeroes.raw" \
    -d format=raw:drive-scsi2="$I/sparse.raw" -d format=raw:drive-sata0="$I/odd-1.raw" \
    -d format=raw:drive-sata1="$I/odd-511.raw" -d format=raw:drive-sata2="$I/odd-4097.raw" \
    -d format=raw:drive-sata3="$I/odd-65535.raw" -d format=raw:drive-sata4="$I/odd-65537.raw"
[ -z "$out" ] || fail "create printed: $out"
expect_ok verify "$T/a.vma"
expect_ok list "$T/a.vma"
printf '%s\n' "$out" | grep -qx "DEV: dev_id=3 size: 16777216 devname: drive-scsi2" ||
    fail "list: $out"
printf '%s\n' "$out" | grep -qx "CFG: size: 20 name: qemu-server.fw" || fail "list: $out"
expect_ok extract "$T/a.vma" "$T/a"
cmp "$T/a/disk-drive-scsi0.raw" "$I/random.raw" || fail "random.raw"
cmp "$T/a/disk-drive-scsi1.raw" "$I/zeroes.raw" || fail "zeroes.raw"
cmp "$T/a/disk-drive-scsi2.raw" "$I/sparse.raw" || fail "sparse.raw"
cmp "$T/a/disk-drive-sata0.raw" "$I/odd-1.raw" || fail "odd-1"
cmp "$T/a/disk-drive-sata1.raw" "$I/odd-511.raw" || fail "odd-511"
cmp "$T/a/disk-drive-sata2.raw" "$I/odd-4097.raw" || fail "odd-4097"
cmp "$T/a/disk-drive-sata3.raw" "$I/odd-65535.raw" || fail "odd-65535"
cmp "$T/a/disk-drive-sata4.raw" "$I/odd-65537.raw" || fail "odd-65537"
cmp "$T/a/qemu-server.fw" "$I/qemu-server.fw" || fail "config qemu-server.fw"
is_sparse "$T/a/disk-drive-scsi2.raw" || fail "extracted sparse image is not sparse"
# the sparse source is mostly holes: the archive must be much smaller than 16 MiB
[ "$(stat -c %s "$T/a.vma")" -lt $((4 * 1024 * 1024)) ] || fail "archive too large"
"$VMA" config "$T/a.vma" | cmp - "$I/qemu-server.conf" || fail "config round trip"
"$VMA" config -c qemu-server.fw "$T/a.vma" | cmp - "$I/qemu-server.fw" || fail "fw round trip"
exit 0
