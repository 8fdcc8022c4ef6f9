#!/usr/bin/env bash
# vma extract -r into targets in QEMU formats (through qemu-nbd): format=qcow2 lines into
# new qcow2 images with write-zeros 0, and with 1 into a qcow2 full of old data (zero
# blocks written as NBD write-zeroes: they read as zeros afterwards) and a vmdk target;
# `qemu-img compare` finds each equal to the source image. Write-zeros 0 over old data
# leaves a zero block's old data (the flag is honoured); throttling.bps paces a qcow2
# target as it does a raw one. Refusals, each before anything is written: a raw file
# named format=qcow2 (qemu-nbd's reason in the one error line), a format that does not
# exist, a malformed format name, a qcow2 target too small, one image for two devices —
# and the good target of the same map and the raw file are left as they were (same
# checksums).
. "$(dirname "$0")/restore-map.bash"
requires qemu-img qemu-io qemu-nbd
MiB=1048576

qemu-img create -q -f qcow2 "$T/t0.qcow2" 1M || fail "create t0"
qemu-img create -q -f qcow2 "$T/t1.qcow2" 200000 || fail "create t1"
run_map "$T/x0" "format=qcow2:0:drive-scsi0=$T/t0.qcow2
format=qcow2:0:drive-scsi1=$T/t1.qcow2
"
[ "$rc" -eq 0 ] || fail "restore into qcow2: exit $rc: $err"
qemu-img compare -q -f raw -F qcow2 "$I/a.raw" "$T/t0.qcow2" || fail "t0 differs from a.raw"
qemu-img compare -q -f raw -F qcow2 "$I/b.raw" "$T/t1.qcow2" || fail "t1 differs from b.raw"
# write-zeros 1 into images full of old data: every zero block reads as zeros afterwards
qemu-img create -q -f qcow2 "$T/o0.qcow2" 1M || fail "create o0"
qemu-io -f qcow2 -c "write -P 0xff 0 1M" "$T/o0.qcow2" >/dev/null || fail "fill o0"
qemu-img create -q -f vmdk "$T/o1.vmdk" 200000 2>/dev/null || fail "create o1.vmdk"
qemu-img info "$T/o1.vmdk" >/dev/null || fail "o1.vmdk"
run_map "$T/x1" "format=qcow2:1:drive-scsi0=$T/o0.qcow2
format=vmdk:1:drive-scsi1=$T/o1.vmdk
"
[ "$rc" -eq 0 ] || fail "restore with write-zeros 1: exit $rc: $err"
qemu-img compare -q -f raw -F qcow2 "$I/a.raw" "$T/o0.qcow2" ||
    fail "o0 (write-zeros 1 over old data) differs from a.raw"
qemu-img compare -q -f raw -F vmdk "$I/b.raw" "$T/o1.vmdk" || fail "vmdk target differs"
# the same with write-zeros 0 leaves the old data in the zero blocks (the flag is honoured)
qemu-io -f qcow2 -c "write -P 0xff 0 1M" "$T/o0.qcow2" >/dev/null || fail "refill o0"
run_map "$T/x2" "format=qcow2:0:drive-scsi0=$T/o0.qcow2
skip=drive-scsi1
"
[ "$rc" -eq 0 ] || fail "restore with write-zeros 0: exit $rc: $err"
qemu-io -f qcow2 -c "read -P 0xff 4096 4096" "$T/o0.qcow2" >/dev/null ||
    fail "write-zeros 0 wrote a zero block"

# throttling: 1 MiB of which half is data at 2 MiB/s takes at least ~0.2 s
qemu-img create -q -f qcow2 "$T/th.qcow2" 1M || fail "create th"
start=$(date +%s%N)
run_map "$T/x3" "throttling.bps=1048576:format=qcow2:1:drive-scsi0=$T/th.qcow2
skip=drive-scsi1
"
secs_ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 0 ] || fail "throttled restore: exit $rc: $err"
[ "$secs_ms" -ge 700 ] || fail "throttling.bps=1M restore of 1 MiB took only $secs_ms ms"
qemu-img compare -q -f raw -F qcow2 "$I/a.raw" "$T/th.qcow2" || fail "throttled target differs"

# refusals before anything is written: the good target's image is untouched
qemu-img create -q -f qcow2 "$T/g1.qcow2" 200000 || fail "create g1"
fill_ff "$T/raw0" $MiB
before_g1=$(md5sum <"$T/g1.qcow2")
before_raw=$(md5sum <"$T/raw0")
map_fails() { # GIST MAP-TEXT
    run_map "$T/rf.$RANDOM" "$2"
    [ "$rc" -eq 1 ] || fail "map '$2': exit $rc (want 1): $err"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "map '$2': not one line: $err"
    case "$err" in *"$1"*) ;; *) fail "map '$2': '$err' lacks '$1'" ;; esac
    [ "$(md5sum <"$T/g1.qcow2")" = "$before_g1" ] || fail "map '$2': the good target changed"
    [ "$(md5sum <"$T/raw0")" = "$before_raw" ] || fail "map '$2': raw0 changed"
}
map_fails "Image is not in qcow2 format" "format=qcow2:1:drive-scsi1=$T/g1.qcow2
format=qcow2:1:drive-scsi0=$T/raw0
"
map_fails "Unknown driver 'qcow9'" "format=qcow2:1:drive-scsi1=$T/g1.qcow2
format=qcow9:1:drive-scsi0=$T/raw0
"
map_fails "bad format name 'QCOW2'" "format=qcow2:1:drive-scsi1=$T/g1.qcow2
format=QCOW2:1:drive-scsi0=$T/raw0
"
qemu-img create -q -f qcow2 "$T/small.qcow2" 512k || fail "create small"
map_fails "unexpected size 524288" "format=qcow2:1:drive-scsi1=$T/g1.qcow2
format=qcow2:1:drive-scsi0=$T/small.qcow2
"
# one image for two devices: the second qemu-nbd cannot take QEMU's image lock
qemu-img create -q -f qcow2 "$T/both.qcow2" 1M || fail "create both"
map_fails 'Failed to get "write" lock' "format=qcow2:1:drive-scsi0=$T/both.qcow2
format=qcow2:1:drive-scsi1=$T/both.qcow2
"
exit 0
