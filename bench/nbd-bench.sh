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
# machine hits every server alike; the tables show the median of RUNS runs: throughput,
# and the server's CPU time (user + system, from /proc) per request, which stays
# meaningful on a machine busy with other work.
#
# Settings (environment):
#   RUNS=3            runs per server and row
#   RUNTIME=5         seconds per fio job
#   SIZE_MIB=256      image size
#   BENCH_DIR=        scratch directory (default: a mktemp dir under bench/scratch)
#   OUR_SERVER=       command line of our server; {IMG} and {SOCK} are replaced.
#                     Default: $BUILDDIR/vmad if it is built, else the test tool
#                     tests/tools/nbd-serve (make test-build); both run the same nbd/
#                     and blockdev.c code.
#   VMAD_OLD=         an older vmad binary to compare with (before/after a change): adds
#                     the server kind `old`, shown as "vmad (old)", to the default
#                     SERVERS, right after ours, so that both run in the same run,
#                     interleaved (on even runs old goes first). Its command line is
#                     vmad's default above with $VMAD_OLD (OLD_SERVER= overrides it,
#                     with {IMG} and {SOCK}).
#                     With `old` in SERVERS a third table gives the ratio new / old of
#                     every job (ours = the new binary).
#   SERVERS="ours qsd qemu-nbd"   any of ours, old, bitmap, qsd, qemu-nbd, in the order
#                     run (with VMAD_OLD set the default is "ours old qsd qemu-nbd").
#                     `bitmap` is ours (vmad) with an enabled dirty bitmap on the
#                     exported disk (block-dirty-bitmap-add over QMP, 64 KiB granularity,
#                     checked to have counted writes after each job): what change
#                     tracking costs guest I/O. Like `old` it swaps places with ours on
#                     even runs, and a table gives bitmap / ours per job, as the ratio
#                     of the medians and as the median of each run's ratio (the two
#                     servers of one run see the same load). E.g.
#                     SERVERS="ours bitmap" JOBS=randwrite-4k RUNS=9
#   JOBS="randwrite-4k randread-4k write-1M read-1M"   the jobs to run, e.g.
#                     JOBS=randwrite-4k for the 4 KiB random write row only
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-5}
SIZE_MIB=${SIZE_MIB:-256}
VMAD_OLD=${VMAD_OLD:-}
if [ -n "$VMAD_OLD" ]; then
    SERVERS=${SERVERS:-ours old qsd qemu-nbd}
else
    SERVERS=${SERVERS:-ours qsd qemu-nbd}
fi
ALL_JOBS="randwrite-4k randread-4k write-1M read-1M"
JOBS=${JOBS:-$ALL_JOBS}
for job in $JOBS; do
    case " $ALL_JOBS " in *" $job "*) ;;
    *) echo "nbd-bench: unknown job '$job' (jobs: $ALL_JOBS)" >&2; exit 1 ;;
    esac
done
for server in $SERVERS; do
    case $server in ours|old|bitmap|qsd|qemu-nbd) ;;
    *) echo "nbd-bench: unknown server '$server' (ours, old, bitmap, qsd, qemu-nbd)" >&2; exit 1 ;;
    esac
done
# vmad's command line; {BIN}, {IMG} and {SOCK} are replaced
VMAD_ARGS='{BIN} --blockdev driver=file,node-name=disk0,filename={IMG} --nbd-server addr.type=unix,addr.path={SOCK} --export nbd,id=e0,node-name=disk0,writable=on'
if [ -x "$BUILDDIR/vmad" ]; then
    DEFAULT_SERVER=${VMAD_ARGS//\{BIN\}/$BUILDDIR/vmad}
else
    DEFAULT_SERVER="$BUILDDIR/tests/tools/nbd-serve"' --blockdev disk0,{IMG} --export disk0,writable --socket {SOCK}'
fi
OUR_SERVER=${OUR_SERVER:-$DEFAULT_SERVER}
echo "nbd-bench: ours = ${OUR_SERVER%% *}" >&2
case " $SERVERS " in *" old "*)
    [ -n "$VMAD_OLD" ] || [ -n "${OLD_SERVER:-}" ] || {
        echo "nbd-bench: server 'old' needs VMAD_OLD (or OLD_SERVER)" >&2; exit 1; }
    OLD_SERVER=${OLD_SERVER:-${VMAD_ARGS//\{BIN\}/$VMAD_OLD}}
    if [ ! -x "${OLD_SERVER%% *}" ]; then
        echo "nbd-bench: ${OLD_SERVER%% *} (the old server) is not executable" >&2
        exit 1
    fi
    echo "nbd-bench: old = ${OLD_SERVER%% *}" >&2
    case ${OUR_SERVER%% *} in */vmad) ;;
    *) echo "nbd-bench: warning: ours is not vmad, the old/new comparison compares unlike servers" >&2 ;;
    esac
    ;;
esac
case " $SERVERS " in *" bitmap "*)
    case ${OUR_SERVER%% *} in */vmad) ;;
    *) echo "nbd-bench: server 'bitmap' needs ours to be vmad (OUR_SERVER=${OUR_SERVER%% *})" >&2
       exit 1 ;;
    esac
    # ours plus a monitor to add the bitmap through
    BITMAP_SERVER="$OUR_SERVER --monitor path={QMP}"
    ;;
esac
export LC_ALL=C

tools="fio python3"
case " $SERVERS " in *" qsd "*) tools+=" qemu-storage-daemon" ;; esac
case " $SERVERS " in *" qemu-nbd "*) tools+=" qemu-nbd" ;; esac
for t in $tools; do
    command -v "$t" >/dev/null || { echo "nbd-bench: $t is not installed" >&2; exit 1; }
done
if [ ! -x "${OUR_SERVER%% *}" ]; then
    echo "nbd-bench: ${OUR_SERVER%% *} missing: run make test-build" >&2
    exit 1
fi

mkdir -p "$HERE/scratch"
DIR=${BENCH_DIR:-$(mktemp -d "$HERE/scratch/nbd.XXXXXX")}
cd "$DIR"
IMG=$DIR/disk.raw
SOCK=$DIR/nbd.sock
QMP_SOCK=$DIR/qmp.sock
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
    ours|old|bitmap)
        local cmd=$OUR_SERVER
        [ "$1" != old ] || cmd=$OLD_SERVER
        [ "$1" != bitmap ] || { cmd=$BITMAP_SERVER; rm -f "$QMP_SOCK"; }
        cmd=${cmd//\{IMG\}/$IMG}
        cmd=${cmd//\{SOCK\}/$SOCK}
        cmd=${cmd//\{QMP\}/$QMP_SOCK}
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
        if [ -S "$SOCK" ]; then
            [ "$1" != bitmap ] || bitmap_qmp add
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "nbd-bench: $1 did not start: $(cat "$DIR/server.log")" >&2
    exit 1
}

# bitmap_qmp add|check: add the bitmap "bench" (enabled) to disk0 of the `bitmap` server,
# or check that it has counted writes (its count grows with every write job)
bitmap_qmp() {
    python3 - "$HERE/../tests/functional" "$QMP_SOCK" "$1" <<'PY' ||
import sys, time
sys.path.insert(0, sys.argv[1])
from qmp import QMP
q = QMP(sys.argv[2], timeout=30)
q.negotiate()
if sys.argv[3] == "add":
    q.ok("block-dirty-bitmap-add", {"node": "disk0", "name": "bench", "granularity": 65536})
    sys.exit(0)
for dev in q.ok("query-block"):
    for b in dev.get("inserted", {}).get("dirty-bitmaps", []):
        if b["name"] == "bench" and b["recording"]:
            print(b["count"])
            sys.exit(0)
sys.exit("no recording bitmap 'bench' on disk0")
PY
    { echo "nbd-bench: the bitmap server's QMP $1 failed" >&2; exit 1; }
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# job name -> fio arguments; the metric: iops or bw (MiB/s)
job_args() {
    case $1 in
    randwrite-4k) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
    randread-4k) echo "--rw=randread --bs=4k --iodepth=16" ;;
    write-1M) echo "--rw=write --bs=1M --iodepth=4" ;;
    read-1M) echo "--rw=read --bs=1M --iodepth=4" ;;
    esac
}

# CPU time (user + system, clock ticks) the server process has used so far
server_ticks() {
    awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"
}

run_job() {
    local server=$1 job=$2 run=$3 json=$DIR/fio.json t0 t1
    t0=$(server_ticks)
    # shellcheck disable=SC2046
    fio --name="$job" --ioengine=nbd --uri="nbd+unix:///disk0?socket=$SOCK" \
        --size=${SIZE_MIB}M --time_based --runtime="$RUNTIME" \
        $(job_args "$job") --output-format=json --output="$json" >/dev/null
    t1=$(server_ticks)
    if [ "$server" = bitmap ] && [[ $job == *write* ]]; then
        local count
        count=$(bitmap_qmp check)
        [ "$count" -gt 0 ] || { echo "nbd-bench: the bitmap counted no writes" >&2; exit 1; }
    fi
    python3 - "$json" "$server" "$job" "$run" $((t1 - t0)) "$(getconf CLK_TCK)" >>"$RES" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["jobs"][0]
side = d["read"] if d["read"]["io_bytes"] > 0 else d["write"]
iops, bw = side["iops"], side["bw_bytes"] / 1048576
cpu_us = int(sys.argv[5]) * 1e6 / int(sys.argv[6]) / max(side["total_ios"], 1)
print(sys.argv[2], sys.argv[3], sys.argv[4], "%.1f" % iops, "%.1f" % bw, "%.2f" % cpu_us)
PY
    tail -n 1 "$RES" >&2
}

# on even runs ours and old (or bitmap) swap places, so that neither always goes first
run_order() {
    local s peer=
    [[ " $SERVERS " == *" old "* ]] && peer=old
    [[ " $SERVERS " == *" bitmap "* ]] && peer=${peer:-bitmap}
    for s in $SERVERS; do
        if [ $(($1 % 2)) = 0 ] && [ -n "$peer" ] && [[ " $SERVERS " == *" ours "* ]]; then
            case $s in ours) s=$peer ;; "$peer") s=ours ;; esac
        fi
        echo "$s"
    done
}

for run in $(seq 1 "$RUNS"); do
    for server in $(run_order "$run"); do
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
names = {"ours": "ours", "old": "vmad (old)", "bitmap": "ours + enabled bitmap",
         "qsd": "qemu-storage-daemon", "qemu-nbd": "qemu-nbd"}
others = [s for s in servers if s != "ours"]
def table(title, metric):
    hdr = ["job", title] + [names.get(s, s) for s in servers]
    if "ours" in servers:
        hdr += ["ours / " + names.get(s, s) for s in others]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for job in jobs:
        col, unit, better = metric(job)
        vals = {s: med(s, job, col) for s in servers}
        cells = [job, unit] + ["%.1f" % vals[s] if col == 5 else "%.0f" % vals[s]
                               for s in servers]
        if "ours" in servers:
            cells += ["%.2f" % (vals["ours"] / vals[s] if better == "high"
                                else vals[s] / vals["ours"]) if vals[s] and vals["ours"]
                      else "-" for s in others]
        print("| " + " | ".join(cells) + " |")
    print()
print("Throughput (median of %d runs; ratio > 1: ours is faster)" %
      len({r[2] for r in rows}))
print()
table("unit", lambda j: (3, "IOPS", "high") if j.endswith("4k") else (4, "MiB/s", "high"))
print("Server CPU time per request, user + system, µs (median; ratio > 1: ours uses less)")
print()
table("unit", lambda j: (5, "µs/req", "low"))
if "ours" in servers and "bitmap" in servers:
    def per_run(job, col):
        r = {}
        for row in rows:
            if row[1] == job and row[0] in ("ours", "bitmap"):
                r.setdefault(row[2], {})[row[0]] = float(row[col])
        return [v["bitmap"] / v["ours"] for v in r.values() if len(v) == 2 and v["ours"]]
    print("An enabled dirty bitmap (bitmap = ours + an enabled bitmap on the disk; "
          "cost = 1 - bitmap / ours):")
    print()
    print("| job | unit | ours | ours + bitmap | ratio of medians | median of run ratios "
          "| run ratios | cost |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for job in jobs:
        unit, col = ("IOPS", 3) if job.endswith("4k") else ("MiB/s", 4)
        for u, c, sign in ((unit, col, 1), ("server µs/req", 5, -1)):
            o, b = med("ours", job, c), med("bitmap", job, c)
            rr = per_run(job, c)
            mr = statistics.median(rr) if rr else float("nan")
            # throughput: cost = 1 - ratio; CPU per request: cost = ratio - 1
            print("| %s | %s | %.1f | %.1f | %.3f | %.3f | %s | %.1f %% |" % (
                job, u, o, b, b / o if o else float("nan"), mr,
                " ".join("%.3f" % x for x in rr), 100 * sign * (1 - mr)))
    print()
if "ours" in servers and "old" in servers:
    # the same layout in every bench script (bench/before-after.sh collects these rows)
    print("Before/after (median of %d runs; new = ours, old = vmad (old)):" %
          len({r[2] for r in rows}))
    print()
    print("| measurement | cache | vmad (old) | vmad | new / old |")
    print("|---|---|---:|---:|---:|")
    for job in jobs:
        unit, col = ("IOPS", 3) if job.endswith("4k") else ("MiB/s", 4)
        for what, c, u in (("NBD %s" % job, col, unit),
                           ("NBD %s server CPU" % job, 5, "µs/req")):
            o, n = med("old", job, c), med("ours", job, c)
            f = "%.0f" if u == "IOPS" else "%.1f"
            print("| %s, %s | warm | %s | %s | %s |" % (
                what, u, f % o, f % n, "%.2f" % (n / o) if o else "-"))
    print()
PY
