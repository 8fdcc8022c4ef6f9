#!/usr/bin/env bash
# A disk opened with O_DIRECT: aligned and unaligned writes and reads through the
# export (unaligned ones are bounced and read-modify-written), write zeroes, and an
# image whose size is not a multiple of the block size. Runs in the build tree,
# skipped if that file system refuses O_DIRECT.
. "$(dirname "$0")/lib.bash"
requires qemu-io qemu-img

make_build_tmp
truncate -s $((32 * 1024 * 1024 + 1536)) "$BUILD_TMP/d.raw"
if ! try_start_server --blockdev d,"$BUILD_TMP/d.raw",direct --export d,writable; then
    if grep -q 'O_DIRECT not supported' "$T/server.log"; then
        skip "SKIP: the build tree's file system refuses O_DIRECT: $(tail -n 1 "$T/server.log")"
    fi
    fail "server failed to start: $(tail -n 1 "$T/server.log")"
fi
qio d 'write -P 0x10 0 1M' 'read -P 0x10 0 1M'
qio d 'write -P 0x21 1 1' 'read -P 0x21 1 1' 'read -P 0x10 2 4094' 'read -P 0x10 0 1'
qio d 'write -P 0x32 4095 4098' 'read -P 0x32 4095 4098' 'read -P 0x10 8193 1000'
qio d 'write -P 0x43 100000 777777' 'read -P 0x43 100000 777777'
qio d 'write -z 200001 5000' 'read -P 0 200001 5000' 'read -P 0x43 205001 1000'
# the partial last block (size = 32 MiB + 1536)
qio d 'write -P 0x54 33554000 1968' 'read -P 0x54 33554000 1968'
qio d 'write -P 0x65 33555000 536' 'read -P 0x65 33555000 536' 'read -P 0x54 33554000 1000'
qio d flush
qemu-img compare -f raw -F raw "$(nbd_uri d)" "$BUILD_TMP/d.raw" >/dev/null ||
    fail "export and image differ"
[ "$(stat -c %s "$BUILD_TMP/d.raw")" = $((32 * 1024 * 1024 + 1536)) ] || fail "image size changed"
if command -v fio >/dev/null 2>&1; then
    fio --name=direct --ioengine=nbd --uri="$(nbd_uri d)" --size=8M --bs=1k --iodepth=16 \
        --rw=randwrite --verify=crc32c --verify_state_save=0 --do_verify=1 --verify_fatal=1 >"$T/fio.log" 2>&1 ||
        { cat "$T/fio.log"; fail "fio unaligned verify on O_DIRECT"; }
fi
stop_server
echo PASS
