#!/usr/bin/env bash
# fio's NBD engine: random 4 KiB writes at queue depth 16 with crc32c verification
# (fio reads every block back and checks it), then mixed random I/O; over a UNIX
# socket and over TCP on 127.0.0.1.
. "$(dirname "$0")/lib.bash"
requires fio

run_fio() {
    local uri=$1; shift
    local out rc=0
    out=$(fio --name=nbdtest --ioengine=nbd --uri="$uri" --size=16M --bs=4k \
              --iodepth=16 "$@" 2>&1) || rc=$?
    if [ $rc != 0 ] || ! echo "$out" | grep -q 'err= 0'; then
        echo "$out" >&2
        fail "fio $* on $uri (exit $rc)"
    fi
}

truncate -s 16M "$T/disk.raw"
start_server --blockdev disk0,"$T/disk.raw" --export disk0,writable
run_fio "$(nbd_uri disk0)" --rw=randwrite --verify=crc32c --verify_state_save=0 --do_verify=1 --verify_fatal=1
run_fio "$(nbd_uri disk0)" --rw=randrw --rwmixread=50 --number_ios=4096
stop_server

start_server --tcp --blockdev disk0,"$T/disk.raw" --export disk0,writable
run_fio "$(nbd_uri disk0)" --rw=randwrite --bs=64k --verify=crc32c --verify_state_save=0 --do_verify=1 \
    --verify_fatal=1
stop_server
echo PASS
