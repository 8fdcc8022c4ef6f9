#!/usr/bin/env bash
# nbdinfo --map shows the holes and data of a sparse file exactly, and follows writes and
# discards made with qemu-io.
. "$(dirname "$0")/nbd-nbdinfo.bash"

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
