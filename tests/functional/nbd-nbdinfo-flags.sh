#!/usr/bin/env bash
# nbdinfo: a writable export's size and flags (trim, write zeroes, FUA, multi-conn, the
# maximum block size, base:allocation, structured replies), a read-only export's.
. "$(dirname "$0")/nbd-nbdinfo.bash"

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

stop_server
echo PASS
