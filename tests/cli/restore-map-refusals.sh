#!/usr/bin/env bash
# `vma extract -r` with a bad map: exit status 1 with one line naming the problem (a
# target of the wrong size, a device without mapping, an unknown format, a missing
# target, a bad write-zeros flag, no device name, an option given twice, a bad number, an
# unknown device, one target for two devices, a device mapped twice, an invalid cache).
. "$(dirname "$0")/restore-map.bash"

fill_ff "$T/t0" 1048576
map_fails() { # GIST MAP-TEXT
    run_map "$T/rf.$RANDOM" "$2"
    [ "$rc" -eq 1 ] || fail "map '$2': exit $rc (want 1): $err"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "map '$2': not one line: $err"
    case "$err" in *"$1"*) ;; *) fail "map '$2': '$err' lacks '$1'" ;; esac
}
fill_ff "$T/small" 1044480
fill_ff "$T/huge" $((1048576 + 4 * 1048576 + 512))
fill_ff "$T/ok1" 200000
map_fails "unexpected size" "0:drive-scsi0=$T/small
0:drive-scsi1=$T/ok1
"
map_fails "unexpected size" "0:drive-scsi0=$T/huge
0:drive-scsi1=$T/ok1
"
map_fails "no mapping for device drive-scsi0" "0:drive-scsi1=$T/ok1
"
map_fails "not in qcow2 format" "format=qcow2:0:drive-scsi0=$T/t0
0:drive-scsi1=$T/ok1
"
map_fails "No such file" "0:drive-scsi0=$T/does-not-exist
0:drive-scsi1=$T/ok1
"
[ ! -e "$T/does-not-exist" ] || fail "a missing target was created"
map_fails "line 1" "2:drive-scsi0=$T/t0
"
map_fails "no device name" "0:$T/t0
"
map_fails "given twice" "format=raw:format=raw:0:drive-scsi0=$T/t0
"
map_fails "not a number" "throttling.bps=fast:0:drive-scsi0=$T/t0
"
map_fails "no device named 'drive-nope'" "0:drive-nope=$T/t0
0:drive-scsi0=$T/t0
0:drive-scsi1=$T/ok1
"
map_fails "same target" "0:drive-scsi0=$T/t0
0:drive-scsi1=$T/t0
"
map_fails "mapped twice" "0:drive-scsi1=$T/ok1
1:drive-scsi1=$T/ok1
"
map_fails "invalid cache" "cache=fast:0:drive-scsi0=$T/t0
"
exit 0
