#!/usr/bin/env bash
# `vma extract -r`: skip= leaves a device alone, a line's options come in any order,
# `done` ends the map (what follows is never read); -v prints progress and the summary.
. "$(dirname "$0")/restore-map.bash"

fill_ff "$T/t4" 1048576
fill_ff "$T/t5" 200000
cp "$T/t5" "$T/t5.orig"
run_map "$T/r3" "skip=drive-scsi1
throttling.group=g1:cache=none:format=raw:throttling.bps=0x10000000:1:drive-scsi0=$T/t4
done
this line is never read
" -v
[ "$rc" -eq 0 ] || fail "skip/options/done: $err"
cmp "$T/t4" "$I/a.raw" || fail "drive-scsi0 with options"
cmp "$T/t5" "$T/t5.orig" || fail "skipped device was written"
printf '%s\n' "$out" | grep -q '^progress 100% ' || fail "-v progress: $out"
printf '%s\n' "$out" | grep -q '^total bytes read ' || fail "-v summary: $out"
exit 0
