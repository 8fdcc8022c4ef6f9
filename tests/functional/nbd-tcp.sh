#!/usr/bin/env bash
# The same server on TCP (127.0.0.1): qemu-io, nbdinfo, qemu-img compare and convert.
. "$(dirname "$0")/lib.bash"
requires qemu-io qemu-img nbdinfo

make_random "$T/src.raw" 8
cp "$T/src.raw" "$T/disk.raw"
start_server --tcp --blockdev disk0,"$T/disk.raw" --export disk0,writable
URI=$(nbd_uri disk0)
case "$URI" in nbd://127.0.0.1:*) ;; *) fail "not a TCP URI: $URI" ;; esac

nbdinfo "$URI" | grep -q 'export-size: 8388608' || fail "nbdinfo over TCP"
qemu-img compare -f raw -F raw "$URI" "$T/src.raw" >/dev/null || fail "compare over TCP"
qio disk0 'write -P 0x5a 12345 100000' 'read -P 0x5a 12345 100000' flush
qemu-img convert -f raw -O raw "$URI" "$T/out.raw" || fail "convert over TCP"
cmp -s "$T/out.raw" "$T/disk.raw" || fail "converted copy differs from the image"
stop_server
echo PASS
