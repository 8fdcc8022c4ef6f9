#!/usr/bin/env bash
# The NBD server's memory and threads are bounded for the whole server (nbd/internal.h,
# docs/security.md section 4): N hostile connections pipeline 32 MiB READs and never
# read a reply (tests/tools/nbd-flood.py). vmad's peak RSS (VmHWM) and thread count must
# stay under the documented bound, and meanwhile a well-behaved qemu-io client on the
# same server still writes and reads correctly, within a timeout.
. "$(dirname "$0")/lib.bash"
need_tools qemu-io python3 timeout

CONNS=${NBD_BUDGET_CONNS:-20}
MIB=$((1024 * 1024))
# The documented bound (nbd/internal.h): the shared budget, plus per connection its
# reserve, its receive buffer and small replies, plus the pool's threads. The margin
# covers the daemon itself (glib, the schema, stacks touched).
# NBD_BUDGET_MIB other than 256 starts vmad with --nbd-buffer-budget (nbd-budget-small.sh).
BUDGET_MIB=${NBD_BUDGET_MIB:-256}
budget_args=()
[ "$BUDGET_MIB" = 256 ] || budget_args=(--buffer-budget "${BUDGET_MIB}M")
CONN_MIB=3
BASE_MIB=64
POOL_THREADS=32
max_rss_mib=$((BUDGET_MIB + CONNS * CONN_MIB + BASE_MIB))
max_threads=$((POOL_THREADS + CONNS + 8))
# Memory is checked only in a plain build (a sanitizer's shadow memory and quarantine
# would dominate it); threads, and the well-behaved client, in every build.
plain_build=1
ldd "${VMAD:-$BUILDDIR/vmad}" 2>/dev/null | grep -qE 'lib[at]san\.so' && plain_build=0

truncate -s 64M "$T/flood.raw" "$T/good.raw"
start_server "${budget_args[@]}" --blockdev flood,"$T/flood.raw" \
    --blockdev good,"$T/good.raw" --export flood --export good,writable

proc_field() {   # proc_field NAME: the number of /proc/PID/status's line NAME
    awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"
}

# The flood holds its connections until end_flood.
start_flood flood --connections "$CONNS" --requests 16 --length $((32 * MIB))
sleep 1

# A well-behaved client, while the flood holds its connections.
start=$(date +%s)
for i in 1 2 3 4; do
    off=$(( (i - 1) * 4 * MIB ))
    timeout 60 qemu-io -f raw "$(nbd_uri good)" -c "write -P $((0x30 + i)) $off 1M" \
        -c "read -P $((0x30 + i)) $off 1M" -c "write -P $((0x40 + i)) $((off + MIB)) 2M" \
        -c "read -P $((0x40 + i)) $((off + MIB)) 2M" >"$T/good.log" 2>&1 ||
        { cat "$T/good.log"; fail "well-behaved client failed (or timed out) during the flood"; }
    ! grep -qiE 'fail|error|mismatch' "$T/good.log" || { cat "$T/good.log"; fail "qemu-io"; }
done
elapsed=$(( $(date +%s) - start ))

hwm_kib=$(proc_field VmHWM)
rss_kib=$(proc_field VmRSS)
threads=$(proc_field Threads)
echo "connections=$CONNS VmRSS=$((rss_kib / 1024))MiB VmHWM=$((hwm_kib / 1024))MiB" \
     "threads=$threads good-client=${elapsed}s (bound: ${max_rss_mib}MiB, $max_threads threads)"
[ $plain_build = 0 ] || [ "$((hwm_kib / 1024))" -le "$max_rss_mib" ] ||
    fail "peak RSS $((hwm_kib / 1024)) MiB exceeds the bound of $max_rss_mib MiB"
[ "$threads" -le "$max_threads" ] ||
    fail "$threads threads exceed the bound of $max_threads"

# The flood ends; the server recovers and stops cleanly.
end_flood
qio good 'read -P 0x34 12M 1M'
server_alive || fail "server died"
stop_server
echo PASS
