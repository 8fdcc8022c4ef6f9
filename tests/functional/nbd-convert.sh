#!/usr/bin/env bash
# Whole-disk copies through the export with qemu-img convert and nbdcopy, in both
# directions, checked with qemu-img compare and cmp.
. "$(dirname "$0")/lib.bash"
requires qemu-img nbdcopy

make_random "$T/src.raw" 24
truncate -s 32M "$T/src.raw"          # 8 MiB hole at the end
truncate -s 32M "$T/disk.raw"
start_server --blockdev disk0,"$T/disk.raw" --export disk0,writable
URI=$(nbd_uri disk0)

# file -> URI (qemu-img), compare both ways
qemu-img convert -n -f raw -O raw "$T/src.raw" "$URI" || fail "qemu-img convert file -> URI"
qemu-img compare -f raw -F raw "$URI" "$T/src.raw" >/dev/null || fail "compare after convert in"
cmp -s "$T/src.raw" "$T/disk.raw" || fail "image file differs from the source"

# URI -> file (qemu-img)
qemu-img convert -f raw -O raw "$URI" "$T/out1.raw" || fail "qemu-img convert URI -> file"
cmp -s "$T/src.raw" "$T/out1.raw" || fail "qemu-img convert URI -> file: content differs"

# URI -> file (nbdcopy) and back into a zeroed disk
nbdcopy "$URI" "$T/out2.raw" || fail "nbdcopy URI -> file"
cmp -s "$T/src.raw" "$T/out2.raw" || fail "nbdcopy URI -> file: content differs"
nbdcopy "$URI" null: || fail "nbdcopy URI -> null:"

qemu-io -f raw "$URI" -c 'write -z 0 32M' >/dev/null || fail "zeroing the export"
nbdcopy "$T/out2.raw" "$URI" || fail "nbdcopy file -> URI"
cmp -s "$T/src.raw" "$T/disk.raw" || fail "nbdcopy file -> URI: image differs"

stop_server
echo PASS
