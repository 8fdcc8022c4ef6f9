#!/usr/bin/env bash
# `vma extract -r FIFO`: Proxmox's restore path. The listing is printed before the map is
# read; map lines name existing targets; skip=, the write-zeros flag, `done`, option
# order, the size rule, throttling and the errors of a bad map.
. "$(dirname "$0")/lib.bash"

I=$T/img
mkdir "$I"
python3 - "$I" <<'EOF'
import os, random, sys
d = sys.argv[1]
rnd = random.Random(99)
a = bytearray(1024 * 1024)            # every other 4 KiB block random, the rest zero
for i in range(0, len(a), 8192):
    a[i:i + 4096] = rnd.randbytes(4096)
open(os.path.join(d, "a.raw"), "wb").write(a)
open(os.path.join(d, "b.raw"), "wb").write(rnd.randbytes(200000))
EOF
printf 'conf\n' >"$I/qemu-server.conf"
check "create" "$VMA" create -c "$I/qemu-server.conf" "$T/src.vma" \
    -d format=raw:drive-scsi0="$I/a.raw" -d format=raw:drive-scsi1="$I/b.raw"

# fill_ff FILE SIZE: a target that holds old data (0xff everywhere)
fill_ff() {
    head -c "$2" /dev/zero | tr '\0' '\377' >"$1"
}

# run_map DIR MAP-TEXT [EXTRA-ARGS...]: extract -r with MAP-TEXT written into a FIFO.
run_map() {
    local dir=$1 map=$2
    shift 2
    local fifo=$T/fifo.$RANDOM
    mkfifo "$fifo"
    "$VMA" extract "$@" -r "$fifo" "$T/src.vma" "$dir" >"$T/map.out" 2>"$T/map.err" &
    local pid=$!
    cleanup_pid "$pid"
    # vma may stop reading at a bad line (the writer then sees EPIPE), or fail before it
    # opens the FIFO at all (the timeout ends the writer): both are vma's business.
    with_timeout 20 bash -c 'printf "%s" "$1" >"$2"' _ "$map" "$fifo" 2>/dev/null
    wait "$pid"
    rc=$?
    out=$(cat "$T/map.out")
    err=$(cat "$T/map.err")
    rm -f "$fifo"
}

# same_data_ff TARGET SOURCE: data blocks equal, the source's zero blocks still 0xff
same_data_ff() {
    python3 - "$1" "$2" <<'EOF'
import sys
t = open(sys.argv[1], "rb").read()
s = open(sys.argv[2], "rb").read()
for i in range(0, len(s), 4096):
    sb, tb = s[i:i + 4096], t[i:i + 4096]
    want = b"\xff" * len(sb) if not any(sb) else sb
    if tb != want:
        sys.exit("block %d: not as expected" % (i // 4096))
EOF
}

# ---- two targets: write-zeros 0 keeps old bytes in zero blocks, 1 writes zeros ----------
fill_ff "$T/t0" 1048576
fill_ff "$T/t1" $((200000 + 4096)) # up to 4 MiB larger is fine
run_map "$T/r1" "0:drive-scsi0=$T/t0
1:drive-scsi1=$T/t1
"
[ "$rc" -eq 0 ] || fail "restore map: exit $rc: $err"
[ "$out" = "$("$VMA" list "$T/src.vma")" ] || fail "listing before the map: $out"
same_data_ff "$T/t0" "$I/a.raw" || fail "write-zeros 0: zero blocks were written"
cmp -n 200000 "$T/t1" "$I/b.raw" || fail "drive-scsi1 data differs"
[ "$(tail -c 4096 "$T/t1" | tr -d '\377' | wc -c)" -eq 0 ] || fail "bytes past the device size changed"
cmp "$T/r1/qemu-server.conf" "$I/qemu-server.conf" || fail "config not written"
[ -z "$(find "$T/r1" -name '*.raw')" ] || fail "-r created raw files in DIR"

fill_ff "$T/t2" 1048576
fill_ff "$T/t3" 200000
run_map "$T/r2" "1:drive-scsi0=$T/t2
0:drive-scsi1=$T/t3
"
[ "$rc" -eq 0 ] || fail "restore map 2: $err"
cmp "$T/t2" "$I/a.raw" || fail "write-zeros 1: zero blocks not zeroed"

# ---- skip=, options in any order, `done` ends the map ------------------------------------
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

# -d and -r together: devices left out by -d need no mapping
fill_ff "$T/t6" 200000
run_map "$T/r4" "1:drive-scsi1=$T/t6
" -d drive-scsi1
[ "$rc" -eq 0 ] || fail "-d with -r: $err"
cmp "$T/t6" "$I/b.raw" || fail "-d with -r: data"

# ---- throttling.bps is a rate limit on writes --------------------------------------------
fill_ff "$T/t7" 1048576
start=$(date +%s%N)
run_map "$T/r5" "throttling.bps=1048576:1:drive-scsi0=$T/t7
skip=drive-scsi1
"
elapsed=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 0 ] || fail "throttled restore: $err"
cmp "$T/t7" "$I/a.raw" || fail "throttled restore data"
[ "$elapsed" -ge 900 ] || fail "1 MiB at 1 MiB/s took only ${elapsed} ms"

# ---- block devices (only where loop devices can be set up: root) ------------------------
# Both directions: create reads a block device completely (no hole information), and a
# restore map writes into one, zeroing the zero blocks when asked (BLKZEROOUT or zeros).
if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null &&
    fill_ff "$T/blk.img" 1048576 && L=$(losetup -f --show "$T/blk.img" 2>/dev/null) &&
    [ -b "$L" ]; then
    # detach only what still belongs to our image file
    on_exit "losetup -n -O NAME -j '$T/blk.img' | xargs -r -n1 losetup -d"
    run_map "$T/rb" "1:drive-scsi0=$L
skip=drive-scsi1
"
    [ "$rc" -eq 0 ] || fail "restore into block device $L: $err"
    cmp "$L" "$I/a.raw" || fail "block device restore with write-zeros 1"
    check "create from a block device" "$VMA" create "$T/blk.vma" drive-scsi0="$L"
    expect_ok extract "$T/blk.vma" "$T/blkx"
    cmp "$T/blkx/disk-drive-scsi0.raw" "$I/a.raw" || fail "create from a block device"
else
    echo "note: no loop device (not root?): block-device paths not exercised"
fi

# ---- refusals --------------------------------------------------------------------------
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
map_fails "unsupported format qcow2" "format=qcow2:0:drive-scsi0=$T/t0
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
