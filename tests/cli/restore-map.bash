# tests/cli/restore-map.bash — the setup of the restore-map-*.sh tests (sourced):
# tests/cli/lib.bash, then $T/src.vma made by vma create from $I/a.raw (drive-scsi0,
# 1 MiB, every other 4 KiB block random, the rest zero), $I/b.raw (drive-scsi1, 200000
# random bytes) and $I/qemu-server.conf; fill_ff and run_map.
. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

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
