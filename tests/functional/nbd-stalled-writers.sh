#!/usr/bin/env bash
# Clients that stop in the middle of a request hold no request thread: more of them than
# the pool has threads (NBD_POOL_THREADS, 32) each send a WRITE header and half its
# payload, then stall (tests/tools/nbd-flood.py --stall-write). The reading is
# non-blocking (nbd/requests.c): meanwhile a well-behaved qemu-io client on the same
# server writes and reads correctly within a timeout, and the thread count stays within
# the documented bound (nbd/internal.h).
. "$(dirname "$0")/lib.bash"
need_tools qemu-io python3 timeout

CONNS=40
POOL_THREADS=32
max_threads=$((POOL_THREADS + CONNS + 8))
truncate -s 64M "$T/stall.raw" "$T/good.raw"
start_server --blockdev stall,"$T/stall.raw" --blockdev good,"$T/good.raw" \
    --export stall,writable --export good,writable --max-connections 64

start_flood stall --connections "$CONNS" --length $((1024 * 1024)) --stall-write

for i in 1 2 3; do
    off=$(( (i - 1) * 4 * 1024 * 1024 ))
    timeout 30 qemu-io -f raw "$(nbd_uri good)" -c "write -P $((0x50 + i)) $off 1M" \
        -c "read -P $((0x50 + i)) $off 1M" >"$T/good.log" 2>&1 ||
        { cat "$T/good.log"; fail "well-behaved client failed (or timed out) beside $CONNS stalled writers"; }
    ! grep -qiE 'fail|error|mismatch' "$T/good.log" || { cat "$T/good.log"; fail "qemu-io"; }
done
threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$SERVER_PID/status")
echo "stalled writers=$CONNS threads=$threads (bound $max_threads)"
[ "$threads" -le "$max_threads" ] || fail "$threads threads exceed the bound of $max_threads"

# The stalled clients go away; nothing of their half payloads was written.
end_flood
qio stall 'read -P 0 0 1M'
server_alive || fail "server died"
stop_server
echo PASS
