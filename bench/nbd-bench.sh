#!/usr/bin/env bash
# nbd-bench.sh — our NBD server against qemu-storage-daemon and qemu-nbd, serving the
# same raw file over a UNIX socket, measured with fio's NBD engine in the same run.
#
# Rows: 4 KiB random write and random read at queue depth 16 (IOPS), 1 MiB sequential
# write and read at queue depth 4 (MiB/s). Every server gets the same image (a file of
# random data, so that reads hit data, not holes; read into the page cache before each
# server starts), page cache on (our server and QSD
# use buffered I/O by default, qemu-nbd gets --cache=writeback). Runs are interleaved
# (run 1 of every server, then run 2, ...) so that noise from other work on the
# machine hits every server alike; the table shows the median of RUNS runs.
#
# Settings (environment):
#   RUNS=3            runs per server and row
#   RUNTIME=5         seconds per fio job
#   SIZE_MIB=256      image size
#   BENCH_DIR=        scratch directory (default: a mktemp dir under bench/work)
#   OUR_SERVER=       command line of our server; {IMG} and {SOCK} are replaced.
#                     Default: tests/tools/nbd-serve (build it with make test-build).
#                     For vmad, put its command line here.
#   SERVERS="ours qsd qemu-nbd"
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-5}
SIZE_MIB=${SIZE_MIB:-256}
SERVERS=${SERVERS:-ours qsd qemu-nbd}
DEFAULT_SERVER="$BUILDDIR/tests/tools/nbd-serve"' --blockdev disk0,{IMG} --export disk0,writable --socket {SOCK}'
OUR_SERVER=${OUR_SERVER:-$DEFAULT_SERVER}
export LC_ALL=C

for t in fio qemu-storage-daemon qemu-nbd python3; do
    command -v "$t" >/dev/null || { echo "nbd-bench: $t is not installed" >&2; exit 1; }
done
if [[ "$OUR_SERVER" == "$BUILDDIR/tests/tools/nbd-serve "* ]] && [ ! -x "$BUILDDIR/tests/tools/nbd-serve" ]; then
    echo "nbd-bench: $BUILDDIR/tests/tools/nbd-serve missing: run make test-build" >&2
    exit 1
fi

mkdir -p "$HERE/work"
DIR=${BENCH_DIR:-$(mktemp -d "$HERE/work/nbd.XXXXXX")}
IMG=$DIR/disk.raw
SOCK=$DIR/nbd.sock
RES=$DIR/results.txt
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; }
    [ -n "${BENCH_DIR:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

echo "nbd-bench: writing a ${SIZE_MIB} MiB image of random data" >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$IMG"
: >"$RES"

start_server() {
    rm -f "$SOCK"
    cat "$IMG" >/dev/null   # every server starts with the image in the page cache
    case $1 in
    ours)
        local cmd=${OUR_SERVER//\{IMG\}/$IMG}
        cmd=${cmd//\{SOCK\}/$SOCK}
        # shellcheck disable=SC2086
        $cmd >"$DIR/server.log" 2>&1 &
        ;;
    qsd)
        qemu-storage-daemon \
            --blockdev driver=file,node-name=disk0,filename="$IMG" \
            --nbd-server addr.type=unix,addr.path="$SOCK" \
            --export type=nbd,id=exp0,node-name=disk0,name=disk0,writable=on \
            >"$DIR/server.log" 2>&1 &
        ;;
    qemu-nbd)
        qemu-nbd -f raw --cache=writeback --shared=4 --persistent -x disk0 \
            --socket="$SOCK" "$IMG" >"$DIR/server.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        [ -S "$SOCK" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "nbd-bench: $1 did not start: $(cat "$DIR/server.log")" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# job name -> fio arguments; the metric: iops or bw (MiB/s)
JOBS="randwrite-4k randread-4k write-1M read-1M"
job_args() {
    case $1 in
    randwrite-4k) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
    randread-4k) echo "--rw=randread --bs=4k --iodepth=16" ;;
    write-1M) echo "--rw=write --bs=1M --iodepth=4" ;;
    read-1M) echo "--rw=read --bs=1M --iodepth=4" ;;
    esac
}

run_job() {
    local server=$1 job=$2 run=$3 json=$DIR/fio.json
    # shellcheck disable=SC2046
    fio --name="$job" --ioengine=nbd --uri="nbd+unix:///disk0?socket=$SOCK" \
        --size=${SIZE_MIB}M --time_based --runtime="$RUNTIME" --ramp_time=1 \
        $(job_args "$job") --output-format=json --output="$json" >/dev/null
    python3 - "$json" "$server" "$job" "$run" >>"$RES" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["jobs"][0]
side = d["read"] if d["read"]["io_bytes"] > 0 else d["write"]
iops, bw = side["iops"], side["bw_bytes"] / 1048576
print(sys.argv[2], sys.argv[3], sys.argv[4], "%.1f" % iops, "%.1f" % bw)
PY
    tail -n 1 "$RES" >&2
}

for run in $(seq 1 "$RUNS"); do
    for server in $SERVERS; do
        start_server "$server"
        for job in $JOBS; do
            run_job "$server" "$job" "$run"
        done
        stop_server
    done
done

python3 - "$RES" "$SERVERS" "$JOBS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
servers, jobs = sys.argv[2].split(), sys.argv[3].split()
def med(server, job, col):
    v = [float(r[col]) for r in rows if r[0] == server and r[1] == job]
    return statistics.median(v) if v else float("nan")
names = {"ours": "ours", "qsd": "qemu-storage-daemon", "qemu-nbd": "qemu-nbd"}
hdr = ["job", "unit"] + [names.get(s, s) for s in servers]
others = [s for s in servers if s != "ours"]
if "ours" in servers:
    hdr += ["ours / " + names.get(s, s) for s in others]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for job in jobs:
    col, unit = (3, "IOPS") if job.endswith("4k") else (4, "MiB/s")
    vals = {s: med(s, job, col) for s in servers}
    cells = [job, unit] + ["%.0f" % vals[s] for s in servers]
    if "ours" in servers:
        cells += ["%.2f" % (vals["ours"] / vals[s]) if vals[s] else "-" for s in others]
    print("| " + " | ".join(cells) + " |")
PY
