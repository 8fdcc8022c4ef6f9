#!/bin/bash
# bench/vma-serve-bench.sh — reads through the vma driver (vma serve) from a warm page
# cache, side by side with the other ways to get a disk out of the same archive:
#
#   cat          cat ARCHIVE >/dev/null (the page cache's speed: an upper bound)
#   extract      vma extract ARCHIVE DIR (whole disk restored to a sparse file)
#   fio-nbd      fio --ioengine=nbd --rw=read --bs=1M --iodepth=4 over vma serve
#   nbdcopy      nbdcopy URI null: over vma serve
#   open         time from starting vma serve until it prints its URI (the index pass)
#
# Settings: SIZE_MIB=1024 (disk size), HOLES=25 (percent of 1 MiB pieces left zero),
# RUNS=3 (medians), BENCH_TMPDIR (scratch; default under $TMPDIR). Prints a markdown
# table; MB/s are 10^6 bytes of disk (or archive, for cat) per second.
set -eu
die() { echo "vma-serve-bench: $*" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
BUILDDIR=${BUILDDIR:-$HERE/../build}
VMA=${VMA:-$BUILDDIR/vma}
SIZE_MIB=${SIZE_MIB:-1024}
HOLES=${HOLES:-25}
RUNS=${RUNS:-3}
BENCH_TMPDIR=${BENCH_TMPDIR:-$(mktemp -d "${TMPDIR:-/tmp}/vma-serve-bench.XXXXXX")}
. "$HERE/lib.bash"
for t in fio nbdcopy python3; do
    command -v $t >/dev/null || die "$t is not installed"
done
[ -x "$VMA" ] || die "$VMA missing: run make"
bench_scratch_dir vma-serve-bench
D=$BENCH_TMPDIR
SERVE_PID=
cleanup() {
    [ -z "$SERVE_PID" ] || { kill "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null; }
    rm -rf "$D"
}
trap cleanup EXIT

python3 - "$D/disk.raw" "$SIZE_MIB" "$HOLES" <<'PY'
import os, random, sys
path, mib, holes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(1)
block = os.urandom(1 << 20)
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(mib):
        if rnd.randrange(100) >= holes:
            f.seek(i << 20)
            f.write(block[i % 4096:] + block[:i % 4096])
PY
"$VMA" create "$D/a.vma" drive-scsi0="$D/disk.raw" >/dev/null
disk=$((SIZE_MIB << 20))
arch=$(stat -c %s "$D/a.vma")
cat "$D/a.vma" >/dev/null; cat "$D/a.vma" >/dev/null         # warm

now() { date +%s.%N; }
mbps() { python3 -c "print('%.0f' % ($1 / 1e6 / ($3 - $2)))"; }
RES=$D/results
: >"$RES"
for run in $(seq 1 "$RUNS"); do
    t0=$(now); cat "$D/a.vma" >/dev/null; t1=$(now)
    echo "cat $(mbps "$arch" "$t0" "$t1")" >>"$RES"
    rm -rf "$D/x"
    t0=$(now); "$VMA" extract "$D/a.vma" "$D/x" >/dev/null; t1=$(now)
    echo "extract $(mbps "$disk" "$t0" "$t1")" >>"$RES"
    rm -rf "$D/x"

    : >"$D/uris"
    t0=$(now)
    "$VMA" serve "$D/a.vma" --socket "$D/s" >"$D/uris" 2>"$D/serve.log" &
    SERVE_PID=$!
    until [ -s "$D/uris" ]; do sleep 0.01; done
    t1=$(now)
    echo "open $(python3 -c "print('%.1f' % (($t1 - $t0) * 1000))")" >>"$RES"
    uri=$(cat "$D/uris")
    fio --name=read --ioengine=nbd --uri="$uri" --rw=read --bs=1M --iodepth=4 \
        --size="$disk" --output-format=json --output="$D/fio.json" >/dev/null
    python3 -c "import json; d = json.load(open('$D/fio.json'))['jobs'][0]['read'];
print('fio-nbd %.0f' % (d['bw_bytes'] / 1e6))" >>"$RES"
    t0=$(now); nbdcopy "$uri" null:; t1=$(now)
    echo "nbdcopy $(mbps "$disk" "$t0" "$t1")" >>"$RES"
    kill -INT "$SERVE_PID"; wait "$SERVE_PID"; SERVE_PID=
done

python3 - "$RES" "$SIZE_MIB" "$HOLES" "$arch" <<'PY'
import statistics, sys
res = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    res.setdefault(k, []).append(float(v))
print("disk %s MiB (%s%% zero), archive %d bytes, median of %d runs, warm page cache\n"
      % (sys.argv[2], sys.argv[3], int(sys.argv[4]), len(res["cat"])))
print("| reader | MB/s |")
print("|---|---|")
for k, what in [("cat", "cat ARCHIVE >/dev/null"), ("extract", "vma extract"),
                ("fio-nbd", "vma serve + fio --ioengine=nbd, 1 MiB sequential, iodepth 4"),
                ("nbdcopy", "vma serve + nbdcopy URI null:")]:
    print("| %s | %.0f |" % (what, statistics.median(res[k])))
print("\nvma serve open (index pass) until the URI is printed: %.1f ms (median)"
      % statistics.median(res["open"]))
PY
