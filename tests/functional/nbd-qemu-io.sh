#!/usr/bin/env bash
# qemu-io against a writable export: pattern writes and reads, unaligned writes,
# write-zeroes, discard; the image file must match what the client saw.
. "$(dirname "$0")/lib.bash"
requires qemu-io qemu-img

truncate -s 64M "$T/disk.raw"
start_server --blockdev disk0,"$T/disk.raw" --export disk0,writable

qio disk0 'write -P 0xab 0 1M' 'read -P 0xab 0 1M'
# unaligned: odd offsets and lengths, spanning block boundaries
qio disk0 'write -P 0x11 1000 3000' 'read -P 0x11 1000 3000' 'read -P 0xab 0 1000' \
    'read -P 0xab 4000 1044576'
qio disk0 'write -P 0x22 4095 2' 'read -P 0x22 4095 2' 'read -P 0x11 1000 3000' \
    'read -P 0xab 4097 100'
qio disk0 'write -P 0x33 8388607 65537' 'read -P 0x33 8388607 65537'
# write zeroes (punched and allocated) and discard
qio disk0 'write -P 0x44 16M 2M' 'write -z 16M 1M' 'read -P 0 16M 1M' 'read -P 0x44 17M 1M'
qio disk0 'write -z -u 17M 512K' 'read -P 0 17M 512K' 'read -P 0x44 17920K 512K'
qio disk0 'write -P 0x55 32M 1M' 'discard 32M 1M' 'write -P 0x56 33M 4k' 'read -P 0x56 33M 4k'
# the end of the disk
qio disk0 'write -P 0x66 67104768 4096' 'read -P 0x66 67104768 4096'
qio disk0 flush

# the file holds exactly what the client saw (the discarded range reads as zeros
# through both paths, so compare the whole thing)
qemu-img compare -f raw -F raw "$(nbd_uri disk0)" "$T/disk.raw" >/dev/null ||
    fail "qemu-img compare: export and image file differ"
cmp -s <(dd if="$T/disk.raw" bs=1 skip=4095 count=2 2>/dev/null) <(printf '\x22\x22') ||
    fail "image file lacks the unaligned write at 4095"

stop_server
echo PASS
