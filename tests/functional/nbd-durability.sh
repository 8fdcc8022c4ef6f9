#!/usr/bin/env bash
# Durability: data written with FUA, or written and then flushed, is in the image
# file when the server is killed with SIGKILL right after the reply.
. "$(dirname "$0")/lib.bash"
requires qemu-io

truncate -s 16M "$T/disk.raw"
start_server --blockdev disk0,"$T/disk.raw" --export disk0,writable
qio disk0 'write -f -P 0xa1 0 1M'                      # FUA
qio disk0 'write -P 0xb2 1M 1M' 'write -P 0xc3 2102152 777' flush
qio disk0 'write -z -f 3M 64k'                         # zeroes with FUA
kill_server

cmp -s <(head -c 1M "$T/disk.raw") <(head -c 1M /dev/zero | tr '\0' '\241') ||
    fail "FUA write lost"
cmp -s <(dd if="$T/disk.raw" bs=1M skip=1 count=1 status=none) \
    <(head -c 1M /dev/zero | tr '\0' '\262') || fail "flushed write lost"
cmp -s <(dd if="$T/disk.raw" bs=1 skip=2102152 count=777 status=none) \
    <(head -c 777 /dev/zero | tr '\0' '\303') || fail "flushed unaligned write lost"

# a restart after the kill serves the same data (stale socket is replaced)
start_server --blockdev disk0,"$T/disk.raw" --export disk0,writable
qio disk0 'read -P 0xa1 0 1M' 'read -P 0xb2 1M 1M' 'read -P 0 3M 64k'
stop_server
echo PASS
