#!/usr/bin/env bash
# backup-latency.sh — guest write latency while a live backup runs into a slow target:
# vmad against qemu-storage-daemon's blockdev-backup, in the same run.
#
# The "guest" is fio's NBD engine: 4 KiB random writes at iodepth 1 for RUNTIME seconds
# over the whole disk (`fio --ioengine=nbd --rw=randwrite --bs=4k --iodepth=1`), against
# the daemon's NBD export on a UNIX socket. Four cases (CASES= below), each RUNS times:
#
#   vmad, no backup
#   vmad, backup to `exec:pv -qL 20m > FILE` (the archive drained at 20 MiB/s); vmad
#        runs with --fleecing-dir in the work dir, so copy-before-write data beyond the
#        memory buffer (--backup-buffer-size BUFFER) spills to a local file
#   qemu-storage-daemon, no backup
#   qemu-storage-daemon, blockdev-backup sync=full (x-perf max-workers 8, max-chunk
#        1 MiB) to a `throttle` filter node (throttle-group with bps-write = 20 MiB/s)
#        over a raw node over a file made with `qemu-img create -f raw`
#
# qemu-storage-daemon serves the disk as a raw node over a file node, exported with
# nbd-server-start + block-export-add (writable); blockdev-backup puts its
# copy-before-write filter above that node, so the export's writes go through it.
# With a backup, the backup is started first and fio right after the command returned
# (LEAD seconds later); when fio ends, the backup's state is recorded (it must still be
# running: the image is large enough for that at 20 MiB/s), and it is cancelled.
#
# Before every case the image is written anew (bench/mkimage.sh: LAT_SIZE bytes, half
# random, a quarter zero clusters, a quarter holes), so that every case starts from the
# same data. With CACHE=drop (the default as root) the page cache is then dropped
# (sync; echo 3 > /proc/sys/vm/drop_caches), so a copy-before-write reads the old data
# from the disk; with CACHE=warm the image stays in the cache it was just written
# through; CACHE=both gives one table each. fio writes JSON; python3 takes the
# completion latency (clat) percentiles.
#
# Environment:
#   CACHE=drop      drop | warm | both (see above)
#   LAT_SIZE=2G     image size
#   RUNTIME=30      seconds of fio per case
#   RUNS=1          runs per case (interleaved); the table shows medians over runs
#   RATE=20m        drain rate of both targets (pv -L syntax: k/m/g = KiB/MiB/GiB per s)
#   BUFFER=256M     vmad --backup-buffer-size
#   LEAD=0          seconds between starting the backup and starting fio
#   BENCH_TMPDIR=   where mktemp -d makes the work dir (default bench/scratch)
#   VMAD=           vmad binary (default $BUILDDIR/vmad)
#   VMAD_OLD=       an older vmad to compare with (before/after a change): its two
#                   cases ("vmad (old)", no backup and backup to exec:pv) run in the
#                   same run, each beside the new binary's (on even runs the old one
#                   goes first), and a table gives new / old
#   CASES=          the cases to run, in this order, from vmad-none, vmad-backup,
#                   old-none, old-backup, qsd-none, qsd-backup (default: all; the old
#                   ones only with VMAD_OLD, as vmad-none old-none vmad-backup
#                   old-backup qsd-none qsd-backup), e.g. CASES="vmad-none old-none
#                   vmad-backup old-backup" to skip qemu-storage-daemon
#   KEEP=1          keep the work dir
#   PERF=1          `perf record -g` of vmad during its backup case (the last run)
#                   into the work dir's perf-MODE.data (implies KEEP=1); PERF=sched
#                   records the context switches instead (sched:sched_switch with
#                   DWARF call graphs: where vmad's threads block or are preempted;
#                   summarise with bench/offcpu-summary.py)
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMAD=${VMAD:-$BUILDDIR/vmad}
LAT_SIZE=${LAT_SIZE:-2G}
RUNTIME=${RUNTIME:-30}
RUNS=${RUNS:-1}
RATE=${RATE:-20m}
BUFFER=${BUFFER:-256M}
LEAD=${LEAD:-0}
BENCH_TMPDIR=${BENCH_TMPDIR:-$HERE/scratch}
PERF=${PERF:-0}
[ "$PERF" = 0 ] || KEEP=1
QMPPY=$HERE/backup-qmp.py
DROP=/proc/sys/vm/drop_caches
EXPORT=drive-scsi0

die() { echo "backup-latency: $*" >&2; exit 1; }
. "$(dirname "$0")/lib.bash"
log() { echo "backup-latency: $*" >&2; }

to_bytes() {
    local v=$1 n
    case "$v" in
        *[Kk]) n=${v%?}; echo $((n << 10)) ;;
        *[Mm]) n=${v%?}; echo $((n << 20)) ;;
        *[Gg]) n=${v%?}; echo $((n << 30)) ;;
        *[Tt]) n=${v%?}; echo $((n << 40)) ;;
        *[!0-9]*|'') die "bad size '$v'" ;;
        *) echo "$v" ;;
    esac
}
size_bytes=$(to_bytes "$LAT_SIZE")
buffer_bytes=$(to_bytes "$BUFFER")
rate_bytes=$(to_bytes "$RATE")
case "$RUNS" in ''|*[!0-9]*|0) die "RUNS must be a positive integer" ;; esac
case "$RUNTIME" in ''|*[!0-9]*|0) die "RUNTIME must be a positive integer" ;; esac
[ -x "$VMAD" ] || die "no vmad at $VMAD (run make, or set VMAD=)"
VMAD_OLD=${VMAD_OLD:-}
[ -z "$VMAD_OLD" ] || [ -x "$VMAD_OLD" ] || die "no vmad at VMAD_OLD=$VMAD_OLD"
if [ -n "$VMAD_OLD" ]; then
    ALL_CASES="vmad-none old-none vmad-backup old-backup qsd-none qsd-backup"
else
    ALL_CASES="vmad-none vmad-backup qsd-none qsd-backup"
fi
read -ra CASES <<<"${CASES:-$ALL_CASES}"
[ ${#CASES[@]} -gt 0 ] || die "CASES is empty"
for c in "${CASES[@]}"; do
    case " $ALL_CASES " in *" $c "*) continue ;; esac
    case $c in old-none|old-backup) die "case $c needs VMAD_OLD" ;; esac
    die "unknown case '$c' (cases: $ALL_CASES)"
done
for t in qemu-storage-daemon qemu-img fio pv python3 openssl; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (scripts/install-deps.sh)"
done
[ "$PERF" = 0 ] || command -v perf >/dev/null 2>&1 || die "PERF=1 needs perf"
bench_cache_modes
bench_scratch_dir backup-latency
need_kib=$((size_bytes * 3 / 1024))
avail_kib=$(df -Pk "$BENCH_TMPDIR" | awk 'NR == 2 { print $4 }')
[ "$avail_kib" -ge "$need_kib" ] ||
    die "$BENCH_TMPDIR has $((avail_kib >> 20)) GiB free, about $((need_kib >> 20)) GiB needed"

WORK=$(mktemp -d "$BENCH_TMPDIR/backup-latency.XXXXXX")
DAEMON_PID=
PERF_PID=
FIO_PID=
cleanup() {
    bench_stop "$FIO_PID"
    bench_stop "$PERF_PID" INT
    bench_stop "$DAEMON_PID"
    bench_remove_work
}
bench_traps cleanup

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
IMG=$WORK/image.raw
QMP_SOCK=$WORK/qmp.sock
NBD_SOCK=$WORK/nbd.sock
OUT=$WORK/backup.out
RES=$WORK/results.txt
: >"$RES"

prepare() {
    rm -f "$OUT"
    "$HERE/mkimage.sh" "$size_bytes" "$IMG"
    sync
    if [ "$mode" = drop ]; then echo 3 >"$DROP"; fi
}

start_vmad() {   # start_vmad BINARY
    rm -f "$QMP_SOCK" "$NBD_SOCK" "$WORK/vmad.pid"
    mkdir -p "$WORK/fleece"
    "$1" --blockdev "driver=file,node-name=$EXPORT,filename=${IMG//,/,,}" \
        --nbd-server "addr.type=unix,addr.path=${NBD_SOCK//,/,,}" \
        --export "type=nbd,id=exp0,node-name=$EXPORT,writable=on" \
        --backup-buffer-size "$buffer_bytes" --fleecing-dir "$WORK/fleece" \
        --monitor "$QMP_SOCK" --pidfile "$WORK/vmad.pid" >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    bench_wait_for -s "$WORK/vmad.pid" vmad 300
}

start_qsd() {
    rm -f "$QMP_SOCK" "$NBD_SOCK"
    qemu-storage-daemon --chardev "socket,id=m0,path=$QMP_SOCK,server=on,wait=off" \
        --monitor chardev=m0 >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    bench_wait_for -S "$QMP_SOCK" qemu-storage-daemon 300
    python3 "$QMPPY" qsd-source "$QMP_SOCK" "$IMG" --export "$NBD_SOCK" "$EXPORT" >/dev/null
}

stop_daemon() {
    kill "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
}

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status"; }

# fio runs in the background so that a signal to this script is handled at once
run_fio() {   # run_fio JSON
    fio --name=guest --ioengine=nbd --uri="nbd+unix:///$EXPORT?socket=$NBD_SOCK" \
        --rw=randwrite --bs=4k --iodepth=1 --size="$size_bytes" \
        --time_based --runtime="$RUNTIME" --clat_percentiles=1 --lat_percentiles=1 \
        --output-format=json --output="$1" >/dev/null &
    FIO_PID=$!
    wait "$FIO_PID" || die "fio failed: $(tail -n 3 "$WORK/daemon.log")"
    FIO_PID=
}

# result SERVER CASE RUN JSON STATE RSS_KIB: one line of $RES (the mode goes first)
result() {
    python3 - "$mode" "$@" >>"$RES" <<'PY'
import json, sys
mode, server, case, run, path, state, rss = sys.argv[1:8]
w = json.load(open(path))["jobs"][0]["write"]
c = w["clat_ns"]
p = c.get("percentile", {})
us = lambda ns: "%.1f" % (ns / 1000.0)
t = w["lat_ns"].get("percentile", {})
print(mode, server, case, run, us(p.get("50.000000", 0)), us(p.get("99.000000", 0)),
      us(p.get("99.900000", 0)), us(c["max"]), w["total_ios"], "%.0f" % w["iops"],
      state, rss, us(t.get("50.000000", 0)), us(t.get("99.000000", 0)))
PY
    local l
    l=$(tail -n 1 "$RES")
    # shellcheck disable=SC2086
    set -- ${l#* }
    log "run $3 $mode $1 backup=$2: clat median $4 µs, p99 $5 µs, p99.9 $6 µs, max $7 µs, $8 writes, backup state ${10}"
}

# backup state after fio: "active@BYTES" (still running, BYTES handed to the archive)
vmad_state() {
    python3 "$QMPPY" vmad-status "$QMP_SOCK" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("%s@%s" % (s.get("status"), s.get("transferred")) if s.get("status") != "error"
      else "error:" + s.get("errmsg", "").replace(" ", "_"))'
}
qsd_state() {
    python3 "$QMPPY" qsd-status "$QMP_SOCK" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("%s@%s" % (j[0]["status"], j[0]["current-progress"]) if j else "gone")'
}

# vmad_none SERVER BINARY, vmad_backup SERVER BINARY (SERVER: vmad or old)
vmad_none() {
    log "run $run/$RUNS: $1 ($2), no backup (cache $mode)"
    prepare
    start_vmad "$2"
    run_fio "$WORK/fio.json"
    result "$1" none "$run" "$WORK/fio.json" - "$(hwm_kib)"
    stop_daemon
}

vmad_backup() {
    local state rss perf_args perf_out=$WORK/perf-$mode.data
    [ "$1" = vmad ] || perf_out=$WORK/perf-$1-$mode.data
    log "run $run/$RUNS: $1 ($2), backup to exec:pv -qL $RATE (cache $mode)"
    prepare
    start_vmad "$2"
    python3 "$QMPPY" vmad-start "$QMP_SOCK" "exec:pv -qL $RATE >'$OUT'" >/dev/null ||
        die "vmad backup did not start: $(tail -n 3 "$WORK/daemon.log")"
    if [ "$PERF" != 0 ] && [ "$run" = "$RUNS" ]; then
        if [ "$PERF" = sched ]; then
            perf_args=(-e sched:sched_switch --call-graph "dwarf,32768")
        else
            perf_args=(-g)
        fi
        perf record "${perf_args[@]}" -o "$perf_out" -p "$DAEMON_PID" >"$WORK/perf.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5   # perf attaches (the backup runs meanwhile)
    fi
    sleep "$LEAD"
    run_fio "$WORK/fio.json"
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID"
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=
    fi
    state=$(vmad_state)
    rss=$(hwm_kib)
    python3 "$QMPPY" vmad-stop "$QMP_SOCK" >/dev/null
    result "$1" backup "$run" "$WORK/fio.json" "$state" "$rss"
    stop_daemon
}

qsd_none() {
    log "run $run/$RUNS: qemu-storage-daemon, no backup (cache $mode)"
    prepare
    start_qsd
    run_fio "$WORK/fio.json"
    result qsd none "$run" "$WORK/fio.json" - "$(hwm_kib)"
    stop_daemon
}

qsd_backup() {
    local state rss
    log "run $run/$RUNS: qemu-storage-daemon, blockdev-backup to a $RATE/s throttled target (cache $mode)"
    prepare
    qemu-img create -q -f raw "$OUT" "$size_bytes"
    start_qsd
    python3 "$QMPPY" qsd-backup "$QMP_SOCK" throttled --file "$OUT" \
        --bps-write "$rate_bytes" --no-wait >/dev/null ||
        die "blockdev-backup did not start: $(tail -n 3 "$WORK/daemon.log")"
    sleep "$LEAD"
    run_fio "$WORK/fio.json"
    state=$(qsd_state)
    rss=$(hwm_kib)
    python3 "$QMPPY" --timeout 120 qsd-stop "$QMP_SOCK" >/dev/null
    result qsd backup "$run" "$WORK/fio.json" "$state" "$rss"
    stop_daemon
}

# pair_order ITEM...: the items in order; on even runs each new/old pair (vmad-X and
# old-X, both present) swaps places, so that neither binary always goes first
pair_order() {
    local r all=" $* "
    for r in "$@"; do
        if [ $((run % 2)) = 0 ]; then
            case $r in
            vmad-*) if [[ $all == *" old-${r#vmad-} "* ]]; then r=old-${r#vmad-}; fi ;;
            old-*) if [[ $all == *" vmad-${r#old-} "* ]]; then r=vmad-${r#old-}; fi ;;
            esac
        fi
        echo "$r"
    done
}

for ((run = 1; run <= RUNS; run++)); do
for mode in "${modes[@]}"; do
    for c in $(pair_order "${CASES[@]}"); do
        case $c in
        vmad-none) vmad_none vmad "$VMAD" ;;
        vmad-backup) vmad_backup vmad "$VMAD" ;;
        old-none) vmad_none old "$VMAD_OLD" ;;
        old-backup) vmad_backup old "$VMAD_OLD" ;;
        qsd-none) qsd_none ;;
        qsd-backup) qsd_backup ;;
        esac
    done
done
done

# ---- report -----------------------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "Machine: $(nproc) CPUs ($cpu), $mem RAM, work dir on $fstype ($(df -P "$WORK" | awk 'NR == 2 { print $1 }')), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Load average (1/5/15 min): $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "Image: $LAT_SIZE ($size_bytes bytes, bench/mkimage.sh, rewritten before every case); fio $(fio --version) 4 KiB randwrite iodepth 1, ${RUNTIME} s; RUNS=$RUNS; CACHE=$CACHE"
echo "Targets drained at $RATE/s ($rate_bytes bytes/s); vmad --backup-buffer-size $buffer_bytes --fleecing-dir (work dir); $(qemu-storage-daemon --version | head -1)"
[ -z "$VMAD_OLD" ] || echo "vmad: ${VMAD#"$SRCDIR"/}; vmad (old): ${VMAD_OLD#"$SRCDIR"/}, same options"
echo "Cases: ${CASES[*]}"
echo
python3 - "$RES" "${modes[*]}" "$DROP" "$RUNS" "$RATE" <<'PY'
import statistics, sys
allrows = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = {"vmad": "vmad", "old": "vmad (old)", "qsd": "qemu-storage-daemon"}
def ratio(a, b, fmt="%.2f ×"):
    return fmt % (a / b) if b else "-"
ba = []   # before/after rows: (measurement, mode, old, new, format)
for mode in sys.argv[2].split():
    rows = [r[1:] for r in allrows if r[0] == mode]
    def med(server, case, col):
        v = [float(r[col]) for r in rows if r[0] == server and r[1] == case]
        return statistics.median(v) if v else float("nan")
    def states(server, case):
        return ", ".join(r[9] for r in rows if r[0] == server and r[1] == case)
    print()
    if mode == "drop":
        print("Page cache dropped (sync; echo 3 > %s) after writing the image, before every case:" % sys.argv[3])
    else:
        print("Page cache warm (the image just written, still in the cache), every case:")
    print()
    print("| server | backup running | clat median µs | clat p99 µs | clat p99.9 µs | clat max µs |"
          " lat median µs | lat p99 µs | writes | IOPS | clat median / no backup |"
          " clat p99 / no backup | lat p99 / no backup | peak RSS MiB |"
          " backup at fio end (state@bytes) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    have = lambda server, case: any(r[0] == server and r[1] == case for r in rows)
    for server in ("vmad", "old", "qsd"):
        for case in ("none", "backup"):
            if not have(server, case):
                continue
            m, p99 = med(server, case, 3), med(server, case, 4)
            rss = max(float(r[10]) for r in rows if r[0] == server and r[1] == case) / 1024
            l99 = med(server, case, 12)
            base = case == "backup" and have(server, "none")
            if base:
                bm, b99, bl99 = med(server, "none", 3), med(server, "none", 4), med(server, "none", 12)
            print("| %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %.1f | %s |" % (
                names[server], "yes" if case == "backup" else "no", m, p99,
                med(server, case, 5), med(server, case, 6), med(server, case, 11), l99,
                med(server, case, 7), med(server, case, 8),
                ratio(m, bm) if base else "—",
                ratio(p99, b99) if base else "—",
                ratio(l99, bl99) if base else "—",
                rss, states(server, case) if case == "backup" else "—"))
    if have("vmad", "backup") and have("vmad", "none"):
        v99, b99 = med("vmad", "backup", 4), med("vmad", "none", 4)
        print()
        line = "Target: p99 with a backup at most 3 × p99 without: vmad %s on clat (%s), %s on total lat." % (
            ratio(v99, b99), "met" if v99 <= 3 * b99 else "MISSED",
            ratio(med("vmad", "backup", 12), med("vmad", "none", 12)))
        if have("qsd", "backup"):
            line += " During the backup vmad's median is 1/%.0f and its p99 1/%.0f of qemu-storage-daemon's." % (
                med("qsd", "backup", 3) / med("vmad", "backup", 3), med("qsd", "backup", 4) / v99)
        print(line)
    for case, what in (("backup", "during a backup to exec:pv -qL " + sys.argv[5]), ("none", "without a backup")):
        if not (have("vmad", case) and have("old", case)):
            continue
        for col, name, fmt in ((4, "clat p99 µs", "%.0f"), (12, "lat p99 µs", "%.0f"),
                               (8, "IOPS", "%.0f")):
            ba.append(("guest 4 KiB write %s %s" % (name, what), mode,
                       med("old", case, col), med("vmad", case, col), fmt))
    if all(have(s, c) for s in ("vmad", "old") for c in ("none", "backup")):
        ba.append(("guest clat p99, backup / no backup", mode,
                   med("old", "backup", 4) / med("old", "none", 4),
                   med("vmad", "backup", 4) / med("vmad", "none", 4), "%.2f"))
        ba.append(("vmad peak RSS MiB during a backup", mode,
                   max(float(r[10]) for r in rows if r[0] == "old" and r[1] == "backup") / 1024,
                   max(float(r[10]) for r in rows if r[0] == "vmad" and r[1] == "backup") / 1024,
                   "%.1f"))
if ba:
    # the same table layout in every bench script (bench/before-after.sh collects these rows)
    print()
    print("Before/after (median of %s runs; new = vmad, old = vmad (old)):" % sys.argv[4])
    print()
    print("| measurement | cache | vmad (old) | vmad | new / old |")
    print("|---|---|---:|---:|---:|")
    for what, mode, o, n, fmt in ba:
        print("| %s | %s | %s | %s | %s |" % (what, mode, fmt % o, fmt % n, ratio(n, o, "%.2f")))
PY
