#!/usr/bin/env bash
# incremental-bench.sh — a full and then an incremental backup after 1 % of the image's
# clusters were rewritten, with vmad and with QEMU's incremental backup job
# (qemu-storage-daemon), side by side in one run; and what an enabled change bitmap
# costs guest writes (fio 4 KiB random writes over NBD with and without one).
#
# Each run, for each daemon, started fresh on a fresh copy of the image (bench/mkimage.sh's
# usual mix: half random data, a quarter zero clusters, a quarter holes):
#   vmad: block-dirty-bitmap-add drive-scsi0 daily (64 KiB); backup bitmap=daily to a new
#         file (the first backup from a bitmap is a full one, its base); the writes; backup
#         bitmap=daily again (on-success: an incremental) to a new file.
#   QSD:  raw node src over the image, block-dirty-bitmap-add src daily (64 KiB);
#         blockdev-backup sync=full to a raw target (qemu-img create -f raw, image size);
#         the writes; blockdev-backup sync=incremental bitmap=daily to a new raw target.
#         x-perf {max-workers: 8, max-chunk: 1 MiB} as in bench/backup-bench.sh.
# The writes: 1 % of the image's 64 KiB clusters (the same clusters in every run, chosen
# with a fixed seed; each written whole with a byte pattern), by one qemu-io over the
# daemon's NBD export, between the two backups (not timed).
# Time: from the backup command to BLOCK_JOB_COMPLETED (vmad fdatasyncs its archive
# before; QEMU does not), and "durable": plus an fdatasync of the output file right after
# the event (bench/incremental-qmp.py), so both sides are timed with their data on disk.
# Size: the archive's bytes (vmad); the target's allocated bytes (QSD: its raw target
# holds the copied clusters, the rest stays holes).
# The page cache is warm (the image read once with cat before every backup), as on a
# host where the guest's recent writes are still cached.
#
# Bitmap cost: vmad on a separate preallocated file (FIO_SIZE), fio --ioengine=nbd
# randwrite bs=4k iodepth=16 for FIO_RUNTIME s, once without a bitmap and once with an
# enabled one on the node, alternating which goes first, RUNS times; medians, and the
# median of the runs' bitmap / no-bitmap ratios (the cost shown).
#
# Environment: SIZE=4G, RUNS=3, FIO_SIZE=512M, FIO_RUNTIME=10 (FIO_RUNTIME=0: no fio
# rows), BENCH_TMPDIR= (default bench/scratch), VMAD=, VMA= (default $BUILDDIR/vmad,
# vma), VMAD_OLD= (another vmad: its full and incremental rows interleaved with the
# others, "vmad-old"; e.g. a build of the previous commit), KEEP=1 keeps the work dir.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMAD=${VMAD:-$BUILDDIR/vmad}
VMA=${VMA:-$BUILDDIR/vma}
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
FIO_SIZE=${FIO_SIZE:-512M}
FIO_RUNTIME=${FIO_RUNTIME:-10}
BENCH_TMPDIR=${BENCH_TMPDIR:-$HERE/scratch}
QMPPY=$HERE/incremental-qmp.py
DROP=/proc/sys/vm/drop_caches

die() { echo "incremental-bench: $*" >&2; exit 1; }
. "$HERE/lib.bash"
log() { echo "incremental-bench: $*" >&2; }

to_bytes() {
    local v=$1 n
    case "$v" in
        *[Kk]) n=${v%?}; echo $((n << 10)) ;;
        *[Mm]) n=${v%?}; echo $((n << 20)) ;;
        *[Gg]) n=${v%?}; echo $((n << 30)) ;;
        *[!0-9]*|'') die "bad size '$v'" ;;
        *) echo "$v" ;;
    esac
}
size_bytes=$(to_bytes "$SIZE")
fio_bytes=$(to_bytes "$FIO_SIZE")
case "$RUNS" in ''|*[!0-9]*|0) die "RUNS must be a positive integer" ;; esac
[ -x "$VMAD" ] || die "no vmad at $VMAD (run make, or set VMAD=)"
[ -x "$VMA" ] || die "no vma at $VMA (run make, or set VMA=)"
for t in qemu-storage-daemon qemu-img qemu-io fio python3 openssl; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (scripts/install-deps.sh)"
done
bench_scratch_dir incremental-bench
# master image + working copy + full archive + raw full target + the small outputs
need_kib=$((size_bytes * 13 / 4 / 1024 + fio_bytes / 1024))
avail_kib=$(df -Pk "$BENCH_TMPDIR" | awk 'NR == 2 { print $4 }')
[ "$avail_kib" -ge "$need_kib" ] ||
    die "$BENCH_TMPDIR has $((avail_kib >> 20)) GiB free, about $((need_kib >> 20)) GiB needed"

WORK=$(mktemp -d "$BENCH_TMPDIR/incremental-bench.XXXXXX")
DAEMON_PID=
cleanup() {
    bench_stop "$DAEMON_PID"
    bench_remove_work
}
bench_traps cleanup

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
MASTER=$WORK/master.raw
IMG=$WORK/image.raw
QMP_SOCK=$WORK/qmp.sock
NBD_SOCK=$WORK/nbd.sock
log "writing a $SIZE image (bench/mkimage.sh) ..."
"$HERE/mkimage.sh" "$size_bytes" "$MASTER"

# the writes: 1 % of the clusters, fixed seed, as qemu-io -c arguments
nclusters=$((size_bytes / 65536))
nwrites=$((nclusters / 100))
python3 - "$nclusters" "$nwrites" >"$WORK/writes" <<'EOF'
import random, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
for i, c in enumerate(sorted(random.Random(20240610).sample(range(n), k))):
    print("write -P %d %d 65536" % (i % 255 + 1, c * 65536))
EOF
mapfile -t WRITE_CMDS <"$WORK/writes"
qio_args=()
for c in "${WRITE_CMDS[@]}"; do qio_args+=(-c "$c"); done

alloc_bytes() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }

stop_daemon() {
    bench_stop "$DAEMON_PID"
    DAEMON_PID=
}

start_vmad() {   # start_vmad IMAGE [BINARY]
    rm -rf "$QMP_SOCK" "$NBD_SOCK" "$WORK/vmad.pid" "$WORK/state"
    "${2:-$VMAD}" --blockdev "driver=file,node-name=drive-scsi0,filename=${1//,/,,}" \
        --state-dir "$WORK/state" --monitor "$QMP_SOCK" --pidfile "$WORK/vmad.pid" \
        --nbd-server "addr.type=unix,addr.path=$NBD_SOCK" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on" >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    bench_wait_for -s "$WORK/vmad.pid" vmad 300
    bench_wait_for -S "$NBD_SOCK" "vmad's NBD server" 300
}

start_qsd() {
    rm -f "$QMP_SOCK" "$NBD_SOCK"
    qemu-storage-daemon --chardev "socket,id=m0,path=$QMP_SOCK,server=on,wait=off" \
        --monitor chardev=m0 >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    bench_wait_for -S "$QMP_SOCK" qemu-storage-daemon 300
    python3 "$QMPPY" qsd-setup "$QMP_SOCK" "$IMG" "$NBD_SOCK" >/dev/null
}

guest_writes() {   # guest_writes EXPORT
    qemu-io -f raw "nbd+unix:///$1?socket=$NBD_SOCK" "${qio_args[@]}" >"$WORK/qio.log" 2>&1 ||
        { tail -n 5 "$WORK/qio.log" >&2; die "qemu-io writes failed"; }
    ! grep -q "failed" "$WORK/qio.log" || die "qemu-io: $(grep -m1 failed "$WORK/qio.log")"
}

fresh_image() {
    rm -f "$IMG"
    # a copy with the same allocation: data segments (zeros included) copied, holes kept
    python3 - "$MASTER" "$IMG" <<'PY'
import os, sys
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
size = os.fstat(src).st_size
pos = 0
while pos < size:
    try:
        pos = os.lseek(src, pos, os.SEEK_DATA)
    except OSError:
        break
    end = os.lseek(src, pos, os.SEEK_HOLE)
    while pos < end:
        n = os.copy_file_range(src, dst, min(end - pos, 1 << 26), pos, pos)
        if n <= 0:
            sys.exit("copy_file_range stopped")
        pos += n
os.ftruncate(dst, size)
PY
    sync "$IMG"
    cat "$IMG" >/dev/null
}

declare -A T TS SZ   # "row" -> space-separated values, one per run

record() {   # record ROW SECONDS DURABLE FILE SIZE
    T[$1]+="$2 "
    TS[$1]+="$3 "
    SZ[$1]+="$5 "
    printf 'incremental-bench: run %d %-10s %8.3f s (durable %8.3f s) %12d bytes\n' "$run" \
        "$1" "$2" "$3" "$5" >&2
}

vmad_rows() {   # vmad_rows [ROW-PREFIX BINARY]
    local res p=${1:-vmad}
    fresh_image
    start_vmad "$IMG" "${2:-$VMAD}"
    python3 "$QMPPY" bitmap-add "$QMP_SOCK" drive-scsi0 daily >/dev/null
    rm -f "$WORK/full.vma" "$WORK/inc.vma"
    cat "$IMG" >/dev/null
    res=$(python3 "$QMPPY" vmad-backup "$QMP_SOCK" "$WORK/full.vma" --bitmap daily) ||
        die "vmad full backup failed: $(tail -n 3 "$WORK/daemon.log")"
    record "$p-full" "$(json_field seconds <<<"$res")" "$(json_field durable <<<"$res")" "$WORK/full.vma" \
        "$(stat -c %s "$WORK/full.vma")"
    guest_writes drive-scsi0
    dirty=$(python3 "$QMPPY" bitmap-count "$QMP_SOCK" drive-scsi0 daily | json_field count)
    [ "$dirty" = $((nwrites * 65536)) ] || die "vmad's bitmap counts $dirty bytes, not $((nwrites * 65536))"
    cat "$IMG" >/dev/null
    res=$(python3 "$QMPPY" vmad-backup "$QMP_SOCK" "$WORK/inc.vma" --bitmap daily) ||
        die "vmad incremental backup failed: $(tail -n 3 "$WORK/daemon.log")"
    record "$p-inc" "$(json_field seconds <<<"$res")" "$(json_field durable <<<"$res")" "$WORK/inc.vma" \
        "$(stat -c %s "$WORK/inc.vma")"
    stop_daemon
    if [ "$run" = 1 ]; then
        log "checking the chain (vma verify --base, vma extract --base, cmp) ..."
        "$VMA" verify --base "$WORK/full.vma" "$WORK/inc.vma" >/dev/null ||
            die "vma verify of the chain failed"
        rm -rf "$WORK/x"
        "$VMA" extract --base "$WORK/full.vma" "$WORK/inc.vma" "$WORK/x" >/dev/null ||
            die "vma extract of the chain failed"
        cmp "$WORK/x/disk-drive-scsi0.raw" "$IMG" || die "the restored chain differs from the image"
        rm -rf "$WORK/x"
    fi
    rm -f "$WORK/full.vma" "$WORK/inc.vma"
}

qsd_rows() {
    local res
    fresh_image
    rm -f "$WORK/full.raw" "$WORK/inc.raw"
    qemu-img create -q -f raw "$WORK/full.raw" "$size_bytes"
    qemu-img create -q -f raw "$WORK/inc.raw" "$size_bytes"
    start_qsd
    python3 "$QMPPY" bitmap-add "$QMP_SOCK" src daily >/dev/null
    cat "$IMG" >/dev/null
    res=$(python3 "$QMPPY" qsd-backup "$QMP_SOCK" "$WORK/full.raw" full) ||
        die "QSD full backup failed: $(tail -n 3 "$WORK/daemon.log")"
    record qsd-full "$(json_field seconds <<<"$res")" "$(json_field durable <<<"$res")" "$WORK/full.raw" \
        "$(alloc_bytes "$WORK/full.raw")"
    guest_writes src
    cat "$IMG" >/dev/null
    res=$(python3 "$QMPPY" qsd-backup "$QMP_SOCK" "$WORK/inc.raw" incremental --bitmap daily) ||
        die "QSD incremental backup failed: $(tail -n 3 "$WORK/daemon.log")"
    record qsd-inc "$(json_field seconds <<<"$res")" "$(json_field durable <<<"$res")" "$WORK/inc.raw" \
        "$(alloc_bytes "$WORK/inc.raw")"
    stop_daemon
    rm -f "$WORK/full.raw" "$WORK/inc.raw"
}

declare -A IOPS
fio_row() {   # fio_row nobitmap|bitmap
    start_vmad "$WORK/fio.raw"
    [ "$1" = nobitmap ] || python3 "$QMPPY" bitmap-add "$QMP_SOCK" drive-scsi0 daily >/dev/null
    fio --name="$1" --ioengine=nbd --uri="nbd+unix:///drive-scsi0?socket=$NBD_SOCK" \
        --size=$((fio_bytes >> 20))M --time_based --runtime="$FIO_RUNTIME" \
        --rw=randwrite --bs=4k --iodepth=16 --output-format=json \
        --output="$WORK/fio.json" >/dev/null || die "fio ($1) failed"
    stop_daemon
    local iops
    iops=$(python3 -c 'import json, sys; print("%.1f" % json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"])' "$WORK/fio.json")
    IOPS[$1]+="$iops "
    log "run $run fio randwrite 4k, $1: $iops IOPS"
}

log "preallocating the fio file ($FIO_SIZE) ..."
dd if=/dev/zero of="$WORK/fio.raw" bs=1M count=$((fio_bytes >> 20)) conv=fsync status=none

for ((run = 1; run <= RUNS; run++)); do
    log "run $run/$RUNS"
    old_rows=:
    [ -z "${VMAD_OLD:-}" ] || old_rows="vmad_rows vmad-old $VMAD_OLD"
    if [ $((run % 2)) = 1 ]; then vmad_rows; $old_rows; qsd_rows; else qsd_rows; $old_rows; vmad_rows; fi
    [ "$FIO_RUNTIME" = 0 ] && continue
    if [ $((run % 2)) = 1 ]; then fio_row nobitmap; fio_row bitmap; else fio_row bitmap; fio_row nobitmap; fi
done

# ---- report -----------------------------------------------------------------------------

fmt_runs() { tr ' ' '\n' | awk 'NF { printf "%s%.3f", (n++ ? " " : ""), $1 }'; }

data_bytes=$(alloc_bytes "$IMG")   # the image after the writes
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "Machine: $(nproc) CPUs ($cpu), $mem RAM, work dir on $fstype, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Load average (1/5/15 min): $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "Image: $SIZE ($size_bytes bytes, bench/mkimage.sh), $data_bytes bytes allocated after the writes; $nwrites of $nclusters clusters (64 KiB) rewritten; RUNS=$RUNS, page cache warm"
echo "Peers: $(qemu-storage-daemon --version | head -1)"
echo
echo "| row | median s (job) | median s (durable) | runs, job (s) | output bytes (median) |"
echo "|---|---:|---:|---|---:|"
declare -A NAME=([vmad-full]="vmad full backup (bitmap's base)" [vmad-inc]="vmad incremental backup"
    [qsd-full]="QSD blockdev-backup sync=full → raw" [qsd-inc]="QSD blockdev-backup sync=incremental → raw")
rows="vmad-full vmad-inc"
[ -z "${VMAD_OLD:-}" ] || rows+=" vmad-old-full vmad-old-inc"
NAME[vmad-old-full]="vmad-old full backup (VMAD_OLD)"
NAME[vmad-old-inc]="vmad-old incremental backup (VMAD_OLD)"
for row in $rows qsd-full qsd-inc; do
    printf '| %s | %.3f | %.3f | %s | %d |\n' "${NAME[$row]}" "$(median <<<"${T[$row]}")" \
        "$(median <<<"${TS[$row]}")" "$(fmt_runs <<<"${T[$row]}")" "$(median <<<"${SZ[$row]}")"
done
vf=$(median <<<"${T[vmad-full]}"); vi=$(median <<<"${T[vmad-inc]}")
qi=$(median <<<"${T[qsd-inc]}"); qis=$(median <<<"${TS[qsd-inc]}"); vis=$(median <<<"${TS[vmad-inc]}")
va=$(median <<<"${SZ[vmad-inc]}")
if [ -n "${VMAD_OLD:-}" ]; then
    echo
    for x in full inc; do
        awk -v n="$(median <<<"${T[vmad-$x]}")" -v o="$(median <<<"${T[vmad-old-$x]}")" \
            -v x="$x" 'BEGIN { printf "Before/after: vmad %s backup time, new / old: %.2f (%.3f s / %.3f s)\n", x, n / o, n, o }'
    done
fi
echo
awk -v vf="$vf" -v vi="$vi" -v qi="$qi" -v vis="$vis" -v qis="$qis" -v va="$va" \
    -v data="$data_bytes" -v size="$size_bytes" 'BEGIN {
    r = vi / vf
    printf "Target: incremental time <= 5 %% of the full backup: %.1f %% (%s)\n", 100 * r, r <= 0.05 ? "met" : "MISSED"
    r = va / data
    printf "Target: incremental archive <= 1.5 %% of the image data: %.2f %% of the allocated bytes, %.2f %% of the image size (%s)\n", 100 * r, 100 * va / size, r <= 0.015 ? "met" : "MISSED"
    printf "Target: at least as fast as QEMU'"'"'s incremental job: vmad %.3f s vs QSD %.3f s, job (%s); durable %.3f s vs %.3f s (%s)\n", vi, qi, vi <= qi ? "met" : "MISSED", vis, qis, vis <= qis ? "met" : "MISSED"
}'
[ "$FIO_RUNTIME" = 0 ] && exit 0
# the bitmap's cost: each run's pair (alternating order) gives a ratio; their median
# is less sensitive to the machine's load drifting between runs than a ratio of medians
n0=$(median <<<"${IOPS[nobitmap]}"); n1=$(median <<<"${IOPS[bitmap]}")
rr=$(paste -d' ' <(tr ' ' '\n' <<<"${IOPS[bitmap]}" | sed '/^$/d') \
    <(tr ' ' '\n' <<<"${IOPS[nobitmap]}" | sed '/^$/d') | awk '{ printf "%.4f ", $1 / $2 }')
rm_=$(median <<<"$rr")
echo
echo "| fio randwrite 4k over NBD, iodepth 16, ${FIO_RUNTIME} s | median IOPS | runs |"
echo "|---|---:|---|"
echo "| no bitmap | $n0 | $(fmt_runs <<<"${IOPS[nobitmap]}") |"
echo "| enabled bitmap on the node | $n1 | $(fmt_runs <<<"${IOPS[bitmap]}") |"
echo "| each run, bitmap / no bitmap | $rm_ (median) | $(fmt_runs <<<"$rr") |"
echo
awk -v r="$rm_" 'BEGIN {
    c = 1 - r
    printf "Target: an enabled bitmap costs <= 5 %% of 4 KiB random-write IOPS: %.1f %% (median of the runs'"'"' ratios; %s)\n", 100 * c, c <= 0.05 ? "met" : "MISSED"
}'
