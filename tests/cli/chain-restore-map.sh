#!/usr/bin/env bash
# `vma extract -r FIFO --base ...`: a chain restored into existing targets through a
# restore map. The listing before the map is the newest archive's (with its CHAIN line
# before CTIME); write-zeros 1 makes a target that held old data (0xff) exactly the
# newest state, zero clusters of newer archives included; write-zeros 0 leaves the
# target's bytes where the newest state is zero; skip= works; a target may not be a base.
. "$(dirname "$0")/lib.bash"
. "$TESTDIR/chain-lib.bash"

C=$T/c
mkdir "$C"
make_chain "$C" 3 11
S0=$(awk '$1 == "drive-scsi0" {print $2}' "$C/devs")
S1=$(awk '$1 == "drive-virtio1" {print $2}' "$C/devs")

fill_ff() {
    head -c "$2" /dev/zero | tr '\0' '\377' >"$1"
}

# run_map DIR MAP-TEXT ARGS...: extract -r with MAP-TEXT written into a FIFO.
run_map() {
    local dir=$1 map=$2
    shift 2
    local fifo=$T/fifo.$RANDOM
    mkfifo "$fifo"
    "$VMA" extract -r "$fifo" "$@" "$dir" >"$T/map.out" 2>"$T/map.err" &
    local pid=$!
    _cleanup_pids+=("$pid")
    with_timeout 20 bash -c 'printf "%s" "$1" >"$2"' _ "$map" "$fifo" 2>/dev/null
    wait "$pid"
    rc=$?
    out=$(cat "$T/map.out")
    err=$(cat "$T/map.err")
    rm -f "$fifo"
}

chain=(--base "$C/inc1.vma" --base "$C/full.vma" --base "$C/inc2.vma" "$C/inc3.vma")

fill_ff "$T/t0" "$S0"
fill_ff "$T/t1" $((S1 + 8192))
run_map "$T/r1" "1:drive-scsi0=$T/t0
1:drive-virtio1=$T/t1
" "${chain[@]}"
[ "$rc" -eq 0 ] || fail "restore map with a chain: exit $rc: $err"
[ "$out" = "$("$VMA" list "$C/inc3.vma")" ] || fail "listing before the map: $out"
case "$out" in *"CHAIN: kind: incremental base: $(uuid_of "$C/inc2.vma") bitmap: backup0
CTIME: "*) ;; *) fail "no CHAIN line before CTIME: $out" ;; esac
cmp "$T/t0" "$C/s3-drive-scsi0.raw" || fail "write-zeros 1: drive-scsi0 is not the newest state"
cmp -n "$S1" "$T/t1" "$C/s3-drive-virtio1.raw" || fail "write-zeros 1: drive-virtio1 differs"
[ "$(tail -c 8192 "$T/t1" | tr -d '\377' | wc -c)" -eq 0 ] || fail "bytes past the device changed"
cmp "$T/r1/qemu-server.conf" "$C/conf3/qemu-server.conf" || fail "config not the newest"
[ ! -e "$T/r1/vmabackup-chain.conf" ] || fail "the chain entry was written as a config"

# write-zeros 0 onto a target that reads as zeros: the newest state exactly
truncate -s "$S0" "$T/z0"
run_map "$T/r2" "0:drive-scsi0=$T/z0
skip=drive-virtio1
" "${chain[@]}"
[ "$rc" -eq 0 ] || fail "write-zeros 0: exit $rc: $err"
cmp "$T/z0" "$C/s3-drive-scsi0.raw" || fail "write-zeros 0: drive-scsi0 differs"

# write-zeros 0 onto old data: data blocks are the newest, zero blocks keep 0xff
fill_ff "$T/f0" "$S0"
run_map "$T/r3" "0:drive-scsi0=$T/f0
skip=drive-virtio1
" "${chain[@]}"
[ "$rc" -eq 0 ] || fail "write-zeros 0 on old data: exit $rc: $err"
python3 - "$T/f0" "$C/s3-drive-scsi0.raw" <<'PY' || fail "write-zeros 0: not as expected"
import sys
t = open(sys.argv[1], "rb").read()
s = open(sys.argv[2], "rb").read()
for i in range(0, len(s), 4096):
    sb, tb = s[i:i + 4096], t[i:i + 4096]
    if tb != (b"\xff" * len(sb) if not any(sb) else sb):
        sys.exit("block %d" % (i // 4096))
PY

# a base of the chain cannot be a target
cp "$C/full.vma" "$T/fullcopy.vma"
truncate -s "$S0" "$T/t2"
run_map "$T/r4" "1:drive-scsi0=$T/t2
1:drive-virtio1=$T/fullcopy.vma
" --base "$C/inc1.vma" --base "$T/fullcopy.vma" --base "$C/inc2.vma" "$C/inc3.vma"
[ "$rc" -eq 1 ] || fail "a base as target: exit $rc"
case "$err" in *"is an archive being read"*) ;; *) fail "a base as target: $err" ;; esac
cmp "$T/fullcopy.vma" "$C/full.vma" || fail "the base was written to"
exit 0
