#!/usr/bin/env bash
# Hostile clients (tests/tools/nbd-hostile.py): bad magic, bad flags, unknown and
# malformed options, oversized option and request lengths, out-of-range offsets,
# unknown commands, writes to a read-only export, clients vanishing mid-payload,
# garbage. Meanwhile a well-behaved qemu-io client works on another export without a
# single error, and afterwards the server still serves, refuses connections beyond
# its limit, and stops cleanly.
. "$(dirname "$0")/lib.bash"
requires qemu-io python3

SIZE=$((64 * 1024 * 1024))
truncate -s $SIZE "$T/w.raw" "$T/good.raw"
truncate -s 16M "$T/r.raw"
start_server --blockdev w,"$T/w.raw" --blockdev r,"$T/r.raw",ro \
    --blockdev good,"$T/good.raw" --export w,writable --export r --export good,writable \
    --max-connections 12

# the well-behaved client, in a loop until told to stop
(
    i=0
    while [ ! -e "$T/stop" ]; do
        off=$(( (i % 32) * 1024 * 1024 ))
        pat=$(( (i % 250) + 1 ))
        if ! qemu-io -f raw "$(nbd_uri good)" -c "write -P $pat $off 1M" \
                -c "read -P $pat $off 1M" >"$T/good.log" 2>&1; then
            cp "$T/good.log" "$T/good.failed"
            break
        fi
        i=$((i + 1))
        echo $i >"$T/good.count"
    done
) &
cleanup_pid $!
good_pid=$!

python3 "$SRCDIR/tests/tools/nbd-hostile.py" "$NBD_SOCK" w r $SIZE >"$T/hostile.out" 2>&1
rc=$?
cat "$T/hostile.out"
touch "$T/stop"
wait "$good_pid"
[ $rc = 0 ] || fail "hostile cases failed"
[ ! -e "$T/good.failed" ] || fail "the well-behaved client failed: $(cat "$T/good.failed")"
[ "$(cat "$T/good.count" 2>/dev/null || echo 0)" -ge 1 ] || fail "well-behaved client never ran"
server_alive || fail "server died"

# still serving, and the connection limit holds (12 connections, the 13th refused)
python3 "$SRCDIR/tests/tools/nbd-hostile.py" "$NBD_SOCK" w r $SIZE --max-connections 12 ||
    fail "connection limit"
qio good 'write -P 0x42 0 64k' 'read -P 0x42 0 64k'

# the same protocol checks over TCP
stop_server
start_server --tcp --blockdev w,"$T/w.raw" --blockdev r,"$T/r.raw",ro \
    --export w,writable --export r
python3 "$SRCDIR/tests/tools/nbd-hostile.py" "127.0.0.1:$NBD_PORT" w r $SIZE \
    >"$T/hostile-tcp.out" 2>&1 || { cat "$T/hostile-tcp.out"; fail "hostile cases over TCP"; }
stop_server
echo PASS
