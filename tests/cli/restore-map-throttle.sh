#!/usr/bin/env bash
# `vma extract -r`: throttling.bps on a map line is a rate limit on the writes.
. "$(dirname "$0")/restore-map.bash"

fill_ff "$T/t7" 1048576
start=$(date +%s%N)
run_map "$T/r5" "throttling.bps=1048576:1:drive-scsi0=$T/t7
skip=drive-scsi1
"
elapsed=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 0 ] || fail "throttled restore: $err"
cmp "$T/t7" "$I/a.raw" || fail "throttled restore data"
[ "$elapsed" -ge 900 ] || fail "1 MiB at 1 MiB/s took only ${elapsed} ms"
exit 0
