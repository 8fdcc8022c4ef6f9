#!/usr/bin/env bash
# `vma extract -d DEV -r`: devices left out by -d need no mapping.
. "$(dirname "$0")/restore-map.bash"

fill_ff "$T/t6" 200000
run_map "$T/r4" "1:drive-scsi1=$T/t6
" -d drive-scsi1
[ "$rc" -eq 0 ] || fail "-d with -r: $err"
cmp "$T/t6" "$I/b.raw" || fail "-d with -r: data"
exit 0
