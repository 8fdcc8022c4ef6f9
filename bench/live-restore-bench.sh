#!/usr/bin/env bash
# live-restore-bench.sh — how soon a restored disk is usable, and how soon it is restored.
#
# One uncompressed archive of a SIZE disk (bench/mkimage.sh: half random data, a quarter
# zero clusters, a quarter holes), restored three ways in one run:
#   live      vmad with driver=vma (the archive), a file target and alloc-track over both,
#             exported over NBD; "usable" = the first successful qemu-io read through the
#             export, counted from vmad's start; "restored" = BLOCK_JOB_COMPLETED of an
#             unlimited block-stream, counted from the same start
#   extract   vma extract of the archive into a directory (usable = restored = its end)
#   convert   vma serve of the archive + qemu-img convert from the export into a raw file
# Each is run RUNS times (default 3) with a warm page cache (the archive read once
# before); the table gives medians, in seconds. Prints a markdown table.
#
# Environment: SIZE (4G), RUNS (3), BENCH_TMPDIR (a scratch directory on a disk, default
# $BUILDDIR/bench-tmp), BUILDDIR (build).
set -euo pipefail
export LC_ALL=C
die() { echo "live-restore-bench: $*" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$HERE/lib.bash"
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
BENCH_TMPDIR=${BENCH_TMPDIR:-$BUILDDIR/bench-tmp}
VMA=$BUILDDIR/vma VMAD=$BUILDDIR/vmad
for t in qemu-io qemu-img python3; do
    command -v $t >/dev/null || die "$t is not installed"
done
[ -x "$VMA" ] && [ -x "$VMAD" ] || die "build vma and vmad first (make)"

bench_scratch_dir live-restore-bench
W=$(mktemp -d "$BENCH_TMPDIR/live-restore.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

"$HERE/mkimage.sh" "$SIZE" "$W/disk.raw"
"$VMA" create "$W/a.vma" drive-scsi0="$W/disk.raw" >/dev/null
cat "$W/a.vma" >/dev/null
bytes=$(stat -c %s "$W/disk.raw")

now() { date +%s.%N; }

live_once() {
    local d=$W/live t0 pid
    rm -rf "$d" && mkdir -p "$d/state"
    truncate -s "$bytes" "$d/tgt.raw"
    t0=$(now)
    "$VMAD" --monitor "$d/qmp.sock" --state-dir "$d/state" \
        --blockdev "driver=vma,node-name=arch0,filename=$W/a.vma,device=drive-scsi0" \
        --blockdev "driver=file,node-name=tgt0,filename=$d/tgt.raw" \
        --blockdev "driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0" \
        --nbd-server "addr.type=unix,addr.path=$d/nbd.sock" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on" 2>"$d/log" &
    pid=$!
    pids+=($pid)
    until qemu-io -f raw -r -c "read 0 4096" "nbd+unix:///drive-scsi0?socket=$d/nbd.sock" \
        >/dev/null 2>&1; do
        kill -0 $pid 2>/dev/null || die "vmad exited: $(tail -n 3 "$d/log")"
        sleep 0.005
    done
    local t1
    t1=$(now)
    PYTHONPATH="$SRCDIR/tests/functional" python3 - "$d/qmp.sock" <<'PYEOF'
import sys
from qmp import QMP
q = QMP(sys.argv[1], timeout=600)
q.negotiate()
q.ok("block-stream", {"device": "drive-scsi0"})
ev = q.event("BLOCK_JOB_COMPLETED", timeout=600)
assert "error" not in ev["data"], ev
PYEOF
    local t2
    t2=$(now)
    kill -TERM $pid; wait $pid || true
    cmp "$d/tgt.raw" "$W/disk.raw" || die "live restore: the target differs"
    printf "%.3f %.3f\n" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)"
}

extract_once() {
    local t0 t1
    rm -rf "$W/x"
    t0=$(now)
    "$VMA" extract "$W/a.vma" "$W/x" >/dev/null
    t1=$(now)
    cmp "$W/x/disk-drive-scsi0.raw" "$W/disk.raw" || die "extract: differs"
    printf "%.3f\n" "$(echo "$t1 - $t0" | bc)"
}

convert_once() {
    local t0 t1 pid uri
    rm -f "$W/conv.raw" "$W/serve.out"
    t0=$(now)
    "$VMA" serve --socket "$W/serve.sock" "$W/a.vma" >"$W/serve.out" 2>&1 &
    pid=$!
    pids+=($pid)
    until [ -S "$W/serve.sock" ] && grep -q nbd "$W/serve.out" 2>/dev/null; do
        kill -0 $pid 2>/dev/null || die "vma serve exited: $(cat "$W/serve.out")"
        sleep 0.005
    done
    uri=$(grep -m1 nbd "$W/serve.out")
    qemu-img convert -f raw -O raw "$uri" "$W/conv.raw"
    t1=$(now)
    kill -TERM $pid; wait $pid || true
    cmp "$W/conv.raw" "$W/disk.raw" || die "convert: differs"
    printf "%.3f\n" "$(echo "$t1 - $t0" | bc)"
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

: >"$W/res-live" ; : >"$W/res-extract" ; : >"$W/res-convert"
for i in $(seq "$RUNS"); do
    live_once >>"$W/res-live"
    extract_once >>"$W/res-extract"
    convert_once >>"$W/res-convert"
done
lu=$(awk '{print $1}' "$W/res-live" | median)
lr=$(awk '{print $2}' "$W/res-live" | median)
ex=$(median <"$W/res-extract")
cv=$(median <"$W/res-convert")
echo "SIZE=$SIZE ($bytes bytes), $RUNS runs, warm page cache, $BENCH_TMPDIR on $fstype"
echo
echo "| restore | disk usable after (s) | disk restored after (s) |"
echo "|---|---|---|"
echo "| live (alloc-track + block-stream) | $lu | $lr |"
echo "| vma extract | $ex | $ex |"
echo "| vma serve + qemu-img convert | $cv | $cv |"
