#!/usr/bin/env bash
# Several exports and several clients at once: a read-only export refuses writes,
# a writable export of a read-only disk is refused, two writable exports take
# concurrent writers, and a second export name for one disk shares the data.
. "$(dirname "$0")/lib.bash"
requires qemu-io qemu-img nbdinfo

make_random "$T/ro.raw" 4
cp "$T/ro.raw" "$T/ro.orig"
truncate -s 32M "$T/a.raw" "$T/b.raw"

# a read-only disk cannot be exported writable
if try_start_server --blockdev r,"$T/ro.raw",ro --export r,writable; then
    fail "writable export of a read-only disk was accepted"
fi
grep -q 'read-only' "$T/server.log" || fail "unexpected message: $(cat "$T/server.log")"

start_server --blockdev ro,"$T/ro.raw",ro --blockdev a,"$T/a.raw" --blockdev b,"$T/b.raw" \
    --export ro --export a,writable --export b,writable --export a,writable,name=a-again

# read-only: readable, not writable (qemu-io refuses to open it for writing; the raw
# protocol answer EPERM is checked by nbd-hostile.sh)
qemu-img compare -f raw -F raw "$(nbd_uri ro)" "$T/ro.orig" >/dev/null || fail "ro content"
if qemu-io -f raw "$(nbd_uri ro)" -c 'write -P 1 0 4k' >/dev/null 2>&1; then
    fail "write to the read-only export succeeded"
fi
cmp -s "$T/ro.raw" "$T/ro.orig" || fail "read-only disk changed"

# concurrent clients on two exports, each client its own region
pids=()
for i in 0 1 2 3; do
    for e in a b; do
        qemu-io -f raw "$(nbd_uri $e)" -c "write -P $((i + 1)) $((i * 8))M 8M" \
            -c "read -P $((i + 1)) $((i * 8))M 8M" >"$T/c-$e-$i.log" 2>&1 &
        pids+=($!)
    done
done
for p in "${pids[@]}"; do
    wait "$p" || fail "a concurrent client failed: $(cat "$T"/c-*.log | grep -i fail | head -3)"
done
for i in 0 1 2 3; do
    qio a "read -P $((i + 1)) $((i * 8))M 8M"
    qio b "read -P $((i + 1)) $((i * 8))M 8M"
done
# the second name of disk a sees the same data
qio a-again 'read -P 1 0 8M' 'write -P 0x77 0 4k'
qio a 'read -P 0x77 0 4k'

# an unknown export is refused with an error, and the server keeps serving
if qemu-io -f raw "$(nbd_uri nosuch)" -c 'read 0 4k' >/dev/null 2>&1; then
    fail "unknown export accepted"
fi
qio a 'read -P 0x77 0 4k'
stop_server
echo PASS
