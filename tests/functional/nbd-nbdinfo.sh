#!/usr/bin/env bash
# nbdinfo: the export's size and flags, and --map showing the holes and data of a
# sparse file exactly.
. "$(dirname "$0")/lib.bash"
requires nbdinfo

truncate -s 16M "$T/sparse.raw"
# data at 1 MiB..1.5 MiB and 8 MiB..8 MiB+64 KiB, holes elsewhere
dd if=/dev/urandom of="$T/sparse.raw" bs=64K seek=16 count=8 conv=notrunc status=none
dd if=/dev/urandom of="$T/sparse.raw" bs=64K seek=128 count=1 conv=notrunc status=none
truncate -s 8M "$T/ro.raw"
start_server --blockdev sp,"$T/sparse.raw" --blockdev ro,"$T/ro.raw",ro \
    --export sp,writable --export ro

info=$(nbdinfo "$(nbd_uri sp)") || fail "nbdinfo"
echo "$info"
echo "$info" | grep -q 'export-size: 16777216' || fail "wrong export size"
echo "$info" | grep -q 'is_read_only: false' || fail "writable export shown read-only"
echo "$info" | grep -q 'can_trim: true' || fail "no trim"
echo "$info" | grep -q 'can_zero: true' || fail "no write zeroes"
echo "$info" | grep -q 'can_fua: true' || fail "no FUA"
echo "$info" | grep -q 'can_multi_conn: true' || fail "no multi-conn"
echo "$info" | grep -q 'block_size_maximum: 33554432' || fail "max block size"
echo "$info" | grep -q 'base:allocation' || fail "no base:allocation context"
echo "$info" | grep -q 'structured' || fail "structured replies not negotiated"

info=$(nbdinfo "$(nbd_uri ro)") || fail "nbdinfo ro"
echo "$info" | grep -q 'is_read_only: true' || fail "read-only export shown writable"
echo "$info" | grep -q 'can_trim: false' || fail "read-only export offers trim"
echo "$info" | grep -q 'can_zero: false' || fail "read-only export offers write zeroes"

list=$(nbdinfo --list "nbd+unix:///?socket=$NBD_SOCK" 2>&1) || fail "nbdinfo --list: $list"
echo "$list" | grep -q 'export="sp"' || fail "--list lacks sp"
echo "$list" | grep -q 'export="ro"' || fail "--list lacks ro"

map=$(nbdinfo --map "$(nbd_uri sp)") || fail "nbdinfo --map"
echo "$map"
expected='0 1048576 3 hole,zero
1048576 524288 0 data
1572864 6815744 3 hole,zero
8388608 65536 0 data
8454144 8323072 3 hole,zero'
got=$(echo "$map" | awk '{print $1, $2, $3, $4}')
[ "$got" = "$expected" ] || fail "nbdinfo --map: expected
$expected
got
$got"

# the map follows writes and discards
qemu-io -f raw "$(nbd_uri sp)" -c 'write -P 1 4M 64k' -c 'discard 1M 512k' >/dev/null ||
    fail "qemu-io write/discard"
got=$(nbdinfo --map "$(nbd_uri sp)" | awk '{print $1, $2, $4}')
expected='0 4194304 hole,zero
4194304 65536 data
4259840 4128768 hole,zero
8388608 65536 data
8454144 8323072 hole,zero'
[ "$got" = "$expected" ] || fail "nbdinfo --map after write+discard: expected
$expected
got
$got"

stop_server
echo PASS
