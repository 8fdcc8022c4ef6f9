#!/usr/bin/env bash
# backup-bench.sh — throughput and peak memory of a live backup with vmad, against QEMU's
# blockdev-backup job in qemu-storage-daemon and against qemu-img convert, on the same
# image in the same run.
#
# The image is bench/mkimage.sh's: SIZE bytes in 1 MiB pieces repeating random, random,
# zeros written to disk, hole (half random data, a quarter zero clusters, a quarter
# holes), the same bytes on every machine. No guest writes during the backups.
#
# Rows (each RUNS times, interleaved: run 1 of every row and cache mode, then run 2, ...,
# so that noise from other work on the machine hits every row alike):
#   vmad backup -> new file            QMP backup backup-file=FILE (vmad fdatasyncs it)
#   vmad backup -> exec:cat >/dev/null QMP backup backup-file='exec:cat >/dev/null'
#   qemu-storage-daemon blockdev-backup -> raw file
#        source: raw node over a file node; target: raw node over a file node on a file
#        made with `qemu-img create -f raw` of the image's size; sync=full,
#        x-perf {max-workers: 8, max-chunk: 1 MiB}
#   qemu-storage-daemon blockdev-backup -> null-co (a null-co node of the image's size)
#   qemu-img convert -f raw -O raw IMAGE FILE
# A daemon is started fresh for every measurement (so its VmHWM is that backup's peak),
# its disk/nodes are set up, then the page cache is prepared (CACHE below), then the
# clock starts when the backup command is sent and stops when BLOCK_JOB_COMPLETED
# arrives (vmad sends it after the archive is closed: flushed, fdatasync'ed, or the
# exec: command exited with 0). Rows that write a file are timed again with an fsync of
# that file after the job (`sync FILE`, "+ sync"): that is the time to durable data,
# comparable between tools that do and do not flush (vmad already fdatasyncs a new file;
# QEMU's job and qemu-img convert do not). Only the output file is synced, not the whole
# machine, so other writers on the machine do not enter the time.
# CPU: user + system time the daemon used during the job (/proc/PID/stat; for qemu-img
# convert /usr/bin/time's %U + %S). It is not the exec: command's (cat's) time. On a
# machine shared with other work it varies far less than the wall time.
# Peak RSS: VmHWM of the daemon from /proc/PID/status right after the job; for
# qemu-img convert the maximum RSS from /usr/bin/time.
#
# Checked once (run 1, outside the timing): `vma verify` of vmad's archive, and `cmp` of
# qemu-storage-daemon's raw target with the image. Any failure fails the benchmark.
#
# Environment:
#   CACHE=both         drop: `sync; echo 3 > /proc/sys/vm/drop_caches` (root) before
#                      every measurement: the image comes from the disk, so the disk's
#                      read speed bounds every row; warm: `sync` and the image read
#                      once with cat instead: the rows measure the tools' own cost;
#                      both (the default as root, else warm): one table each
#   SIZE=4G            image size (bytes or K/M/G/T suffix)
#   RUNS=3             runs per row; tables show medians
#   BUFFER=256M        vmad --backup-buffer-size (the memory target is 64 MiB + BUFFER)
#   MAX_WORKERS=       vmad backup max-workers (default: vmad's default)
#   BENCH_TMPDIR=      where mktemp -d makes the work dir (default bench/scratch in the
#                      source tree: the repo's file system; warns on tmpfs)
#   VMAD=, VMA=        binaries (default $BUILDDIR/vmad, $BUILDDIR/vma)
#   VMAD_OLD=          an older vmad to compare with (before/after a change): adds the
#                      rows old-file and old-exec, the vmad rows run with this binary,
#                      each beside its new counterpart in every run (on even runs the
#                      old one goes first), and a table new / old; VMA_OLD= (default:
#                      the vma beside VMAD_OLD, else VMA) verifies the old archive
#   ROWS=              the rows to run, in this order, from vmad-file, old-file,
#                      vmad-exec, old-exec, qsd-raw, qsd-null, qemu-img (default: all;
#                      the old rows only with VMAD_OLD), e.g.
#                      ROWS="vmad-file old-file vmad-exec old-exec"
#   KEEP=1             keep the work dir
#   PERF=1             `perf record -g` of vmad during its backups of the last run, into
#                      WORKDIR/perf-MODE-ROW.data (implies KEEP=1; perf adds a little
#                      overhead to those rows)
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMAD=${VMAD:-$BUILDDIR/vmad}
VMA=${VMA:-$BUILDDIR/vma}
VMAD_OLD=${VMAD_OLD:-}
if [ -n "$VMAD_OLD" ] && [ -x "$(dirname "$VMAD_OLD")/vma" ]; then
    VMA_OLD=${VMA_OLD:-$(dirname "$VMAD_OLD")/vma}
else
    VMA_OLD=${VMA_OLD:-$VMA}
fi
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
BUFFER=${BUFFER:-256M}
MAX_WORKERS=${MAX_WORKERS:-}
BENCH_TMPDIR=${BENCH_TMPDIR:-$HERE/scratch}
PERF=${PERF:-0}
[ "$PERF" = 0 ] || KEEP=1
QMPPY=$HERE/backup-qmp.py
DROP=/proc/sys/vm/drop_caches
TIME=/usr/bin/time

die() { echo "backup-bench: $*" >&2; exit 1; }
. "$(dirname "$0")/lib.bash"
log() { echo "backup-bench: $*" >&2; }

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
size_bytes=$(to_bytes "$SIZE")
buffer_bytes=$(to_bytes "$BUFFER")
case "$RUNS" in ''|*[!0-9]*|0) die "RUNS must be a positive integer" ;; esac
[ -x "$VMAD" ] || die "no vmad at $VMAD (run make, or set VMAD=)"
[ -x "$VMA" ] || die "no vma at $VMA (run make, or set VMA=)"
ALL_ROWS="vmad-file vmad-exec qsd-raw qsd-null qemu-img"
[ -z "$VMAD_OLD" ] || ALL_ROWS="vmad-file old-file vmad-exec old-exec qsd-raw qsd-null qemu-img"
read -ra ROWS <<<"${ROWS:-$ALL_ROWS}"
[ ${#ROWS[@]} -gt 0 ] || die "ROWS is empty"
for row in "${ROWS[@]}"; do
    case " $ALL_ROWS " in *" $row "*) continue ;; esac
    case $row in old-file|old-exec) die "row $row needs VMAD_OLD" ;; esac
    die "unknown row '$row' (rows: $ALL_ROWS)"
done
has_row() { case " ${ROWS[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
if [ -n "$VMAD_OLD" ]; then
    [ -x "$VMAD_OLD" ] || die "no vmad at VMAD_OLD=$VMAD_OLD"
    [ -x "$VMA_OLD" ] || die "no vma at VMA_OLD=$VMA_OLD"
fi
[ -x "$TIME" ] || die "$TIME is missing (Debian package 'time')"
for t in qemu-storage-daemon qemu-img python3 openssl cmp; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (scripts/install-deps.sh)"
done
[ "$PERF" = 0 ] || command -v perf >/dev/null 2>&1 || die "PERF=1 needs perf"
bench_cache_modes
bench_scratch_dir backup-bench
# image (3/4 allocated) + archive (1/2) + raw target (all of it, QEMU allocates holes)
need_kib=$((size_bytes * 9 / 4 / 1024))
avail_kib=$(df -Pk "$BENCH_TMPDIR" | awk 'NR == 2 { print $4 }')
[ "$avail_kib" -ge "$need_kib" ] ||
    die "$BENCH_TMPDIR has $((avail_kib >> 20)) GiB free, about $((need_kib >> 20)) GiB needed"

WORK=$(mktemp -d "$BENCH_TMPDIR/backup-bench.XXXXXX")
DAEMON_PID=
PERF_PID=
cleanup() {
    bench_stop "$PERF_PID" INT
    bench_stop "$DAEMON_PID"
    bench_remove_work
}
bench_traps cleanup

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
IMG=$WORK/image.raw
QMP_SOCK=$WORK/qmp.sock
OUT=$WORK/out

log "writing a $SIZE image (bench/mkimage.sh) ..."
"$HERE/mkimage.sh" "$size_bytes" "$IMG"
sync

now() { date +%s.%N; }

# the page cache before a measurement: dropped, or the image read into it
prepare_cache() {
    sync
    if [ "$mode" = drop ]; then
        echo 3 >"$DROP"
    else
        cat "$IMG" >/dev/null
    fi
}

start_vmad() {   # start_vmad BINARY
    rm -f "$QMP_SOCK" "$WORK/vmad.pid"
    "$1" --blockdev "driver=file,node-name=drive-scsi0,filename=${IMG//,/,,}" \
        --backup-buffer-size "$buffer_bytes" \
        --monitor "$QMP_SOCK" --pidfile "$WORK/vmad.pid" >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    bench_wait_for -s "$WORK/vmad.pid" vmad 300
}

start_qsd() {
    rm -f "$QMP_SOCK"
    qemu-storage-daemon --chardev "socket,id=m0,path=$QMP_SOCK,server=on,wait=off" \
        --monitor chardev=m0 >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    bench_wait_for -S "$QMP_SOCK" qemu-storage-daemon 300
    python3 "$QMPPY" qsd-source "$QMP_SOCK" "$IMG" >/dev/null
}

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status"; }
# user + system CPU time of the daemon so far, in seconds (fields 14, 15 of /proc/PID/stat,
# counted after the ")" that ends the command name)
cpu_secs() {
    local st
    st=$(cat "/proc/$DAEMON_PID/stat")
    st=${st##*) }
    awk -v hz="$(getconf CLK_TCK)" '{ print ($12 + $13) / hz }' <<<"$st"
}

stop_daemon() {
    kill "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
}

declare -A JOB SYNC RSS CPU   # "mode|row" -> space-separated values, one per run
declare -A NAME=(
    [vmad-file]="vmad backup → new file"
    [vmad-exec]="vmad backup → exec:cat >/dev/null"
    [old-file]="vmad (old) backup → new file"
    [old-exec]="vmad (old) backup → exec:cat >/dev/null"
    [qsd-raw]="QSD blockdev-backup → raw file"
    [qsd-null]="QSD blockdev-backup → null-co"
    [qemu-img]="qemu-img convert -O raw"
)
declare -A PEER=([vmad-file]=qsd-raw [vmad-exec]=qsd-null [old-file]=qsd-raw [old-exec]=qsd-null)
declare -A WRITES=([vmad-file]=1 [old-file]=1 [qsd-raw]=1 [qemu-img]=1)

record() {   # record ROW JOB_S SYNC_S RSS_KIB CPU_S (for the current run and mode)
    JOB[$mode|$1]+="$2 "
    SYNC[$mode|$1]+="$3 "
    RSS[$mode|$1]+="$4 "
    CPU[$mode|$1]+="$5 "
    local s="        "
    [ -z "${WRITES[$1]:-}" ] || s=$(printf '%7.3f s' "$3")
    printf 'backup-bench: run %d %-5s %-38s job %7.3f s  +sync %s  CPU %6.2f s  peak RSS %6.1f MiB\n' \
        "$run" "$mode" "${NAME[$1]}" "$2" "$s" "$5" "$(awk -v k="$4" 'BEGIN { print k / 1024 }')" >&2
}


# vmad_row ROW BINARY TARGET [FILE]: FILE, when the target is a file, is fsync'ed after
# the job
vmad_row() {
    local row=$1 bin=$2 target=$3 file=${4:-} res secs t1 t2 rss c0 c1
    local wargs=()
    [ -z "$MAX_WORKERS" ] || wargs=(--max-workers "$MAX_WORKERS")
    start_vmad "$bin"
    prepare_cache
    if [ "$PERF" != 0 ] && [ "$run" = "$RUNS" ]; then
        perf record -g -o "$WORK/perf-$mode-$row.data" -p "$DAEMON_PID" \
            >"$WORK/perf.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5   # perf attaches
    fi
    c0=$(cpu_secs)
    res=$(python3 "$QMPPY" vmad-backup "$QMP_SOCK" "$target" "${wargs[@]}") ||
        die "${NAME[$row]} failed: $(tail -n 3 "$WORK/daemon.log")"
    t1=$(now)
    c1=$(cpu_secs)
    [ -z "$file" ] || sync "$file"
    t2=$(now)
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID"
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=
    fi
    rss=$(hwm_kib)
    stop_daemon
    secs=$(json_field seconds <<<"$res")
    record "$row" "$secs" "$(awk -v s="$secs" -v a="$t1" -v b="$t2" 'BEGIN { print s + b - a }')" "$rss" \
        "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')"
}

qsd_row() {   # qsd_row ROW KIND
    local row=$1 kind=$2 res secs t1 t2 rss args c0 c1
    rm -f "$OUT"
    if [ "$kind" = raw ]; then
        qemu-img create -q -f raw "$OUT" "$size_bytes"
        args=(--file "$OUT")
    else
        args=(--size "$size_bytes")
    fi
    start_qsd
    prepare_cache
    c0=$(cpu_secs)
    res=$(python3 "$QMPPY" qsd-backup "$QMP_SOCK" "$kind" "${args[@]}") ||
        die "${NAME[$row]} failed: $(tail -n 3 "$WORK/daemon.log")"
    t1=$(now)
    c1=$(cpu_secs)
    [ "$kind" != raw ] || sync "$OUT"
    t2=$(now)
    rss=$(hwm_kib)
    secs=$(json_field seconds <<<"$res")
    record "$row" "$secs" "$(awk -v s="$secs" -v a="$t1" -v b="$t2" 'BEGIN { print s + b - a }')" "$rss" \
        "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')"
    stop_daemon
}

# vmad_file_row ROW VMAD VMA: a backup to a new file; its archive is checked once with VMA
declare -A CHECKED
vmad_file_row() {
    rm -f "$OUT.vma"
    vmad_row "$1" "$2" "$OUT.vma" "$OUT.vma"
    if [ -z "${CHECKED[$1]:-}" ]; then
        log "checking the archive of ${NAME[$1]} (vma verify) ..."
        "$3" verify "$OUT.vma" >/dev/null || die "vma verify of the archive of ${NAME[$1]} failed"
        [ "$1" != vmad-file ] || archive_bytes=$(stat -c %s "$OUT.vma")
        [ "$1" != old-file ] || old_archive_bytes=$(stat -c %s "$OUT.vma")
        CHECKED[$1]=1
    fi
    rm -f "$OUT.vma"
}

qemu_img_row() {
    local t0 t1 t2 kib usr sys
    rm -f "$OUT"
    prepare_cache
    t0=$(now)
    "$TIME" -f '%M %U %S' -o "$WORK/time.out" qemu-img convert -f raw -O raw "$IMG" "$OUT" ||
        die "qemu-img convert failed"
    t1=$(now)
    sync "$OUT"
    t2=$(now)
    read -r kib usr sys < <(tail -n 1 "$WORK/time.out")
    record qemu-img "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        "$(awk -v a="$t0" -v b="$t2" 'BEGIN { print b - a }')" "$kib" \
        "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')"
    rm -f "$OUT"
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

archive_bytes=-
old_archive_bytes=-
for ((run = 1; run <= RUNS; run++)); do
for mode in "${modes[@]}"; do
    log "run $run/$RUNS, cache $mode"
    for row in $(pair_order "${ROWS[@]}"); do
        case $row in
        vmad-file) vmad_file_row vmad-file "$VMAD" "$VMA" ;;
        old-file) vmad_file_row old-file "$VMAD_OLD" "$VMA_OLD" ;;
        vmad-exec) vmad_row vmad-exec "$VMAD" "exec:cat >/dev/null" ;;
        old-exec) vmad_row old-exec "$VMAD_OLD" "exec:cat >/dev/null" ;;
        qsd-raw)
            qsd_row qsd-raw raw
            if [ -z "${CHECKED[qsd-raw]:-}" ]; then
                log "checking the raw target (cmp) ..."
                cmp "$IMG" "$OUT" || die "qemu-storage-daemon's target differs from the image"
                CHECKED[qsd-raw]=1
            fi
            rm -f "$OUT"
            ;;
        qsd-null) qsd_row qsd-null null ;;
        qemu-img) qemu_img_row ;;
        esac
    done
done
done

# ---- report -----------------------------------------------------------------------------

maxof() { tr ' ' '\n' | awk 'NF && $1 > m { m = $1 } END { print m + 0 }'; }
fmt_runs() { tr ' ' '\n' | awk 'NF { printf "%s%.2f", (n++ ? " " : ""), $1 }'; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "Machine: $(nproc) CPUs ($cpu), $mem RAM, work dir on $fstype ($(df -P "$WORK" | awk 'NR == 2 { print $1 }')), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Load average (1/5/15 min): $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "Image: $SIZE ($size_bytes bytes, bench/mkimage.sh); RUNS=$RUNS; CACHE=$CACHE"
echo "vmad: ${VMAD#"$SRCDIR"/} --backup-buffer-size $buffer_bytes, max-workers ${MAX_WORKERS:-default}; archive $archive_bytes bytes"
[ -z "$VMAD_OLD" ] ||
    echo "vmad (old): ${VMAD_OLD#"$SRCDIR"/}, same options; archive $old_archive_bytes bytes"
echo "Rows: ${ROWS[*]}"
echo "Peers: $(qemu-storage-daemon --version | head -1), $(qemu-img --version | head -1)"
for mode in "${modes[@]}"; do
echo
if [ "$mode" = drop ]; then
    echo "Page cache dropped (sync; echo 3 > $DROP) before every measurement:"
else
    echo "Page cache warm (the image read once with cat before every measurement):"
fi
echo
echo "| operation | median s (job) | median s (+ sync) | runs, job (s) | GB/s (job) | CPU s (median) | peak RSS MiB | vs QSD, same destination: job / + sync / CPU |"
echo "|---|---:|---:|---|---:|---:|---:|---|"
for row in "${ROWS[@]}"; do
    jm=$(median <<<"${JOB[$mode|$row]}")
    sm="—"
    [ -z "${WRITES[$row]:-}" ] || sm=$(median <<<"${SYNC[$mode|$row]}" | awk '{ printf "%.2f", $1 }')
    rss=$(maxof <<<"${RSS[$mode|$row]}")
    cm=$(median <<<"${CPU[$mode|$row]}")
    ratio="—"
    peer=${PEER[$row]:-}
    if [ -n "$peer" ] && has_row "$peer"; then
        pj=$(median <<<"${JOB[$mode|$peer]}")
        ratio=$(awk -v a="$jm" -v b="$pj" 'BEGIN { printf "%.2f ×", a / b }')
        if [ -n "${WRITES[$row]:-}" ]; then
            ps=$(median <<<"${SYNC[$mode|$peer]}")
            ratio+=$(awk -v a="$sm" -v b="$ps" 'BEGIN { printf " / %.2f ×", a / b }')
        else
            ratio+=" / —"
        fi
        pc=$(median <<<"${CPU[$mode|$peer]}")
        ratio+=$(awk -v a="$cm" -v b="$pc" 'BEGIN { printf " / %.2f ×", a / b }')
    fi
    awk -v name="${NAME[$row]}" -v jm="$jm" -v sm="$sm" -v runs="$(fmt_runs <<<"${JOB[$mode|$row]}")" \
        -v size="$size_bytes" -v rss="$rss" -v ratio="$ratio" -v cm="$cm" 'BEGIN {
        printf "| %s | %.2f | %s | %s | %.2f | %.2f | %.1f | %s |\n", name, jm, sm, runs, size / 1e9 / jm, cm, rss / 1024, ratio }'
done
done
echo
if has_row vmad-file || has_row vmad-exec; then
    vmad_rss=$(for mode in "${modes[@]}"; do echo "${RSS[$mode|vmad-file]:-}"; echo "${RSS[$mode|vmad-exec]:-}"; done | maxof)
    awk -v r="$vmad_rss" -v b="$buffer_bytes" 'BEGIN {
        lim = 64 + b / 1048576
        printf "vmad peak RSS %.1f MiB; memory target 64 MiB + buffer %.0f MiB = %.0f MiB: %s\n",
            r / 1024, b / 1048576, lim, (r / 1024 <= lim ? "met" : "MISSED") }'
fi
if has_row qsd-raw || has_row qsd-null; then
    echo "Throughput target: vmad at least 2× faster than QSD to the same kind of destination (ratio ≤ 0.50)."
fi

# before/after: the same table layout in every bench script (bench/before-after.sh
# collects these rows)
ba_row() {   # ba_row WHAT MODE OLD NEW FORMAT
    awk -v w="$1" -v m="$2" -v o="$3" -v n="$4" -v f="$5" 'BEGIN {
        printf "| %s | %s | " f " | " f " | %s |\n", w, m, o, n, (o > 0 ? sprintf("%.2f", n / o) : "-") }'
}
if { has_row vmad-file && has_row old-file; } || { has_row vmad-exec && has_row old-exec; }; then
    echo
    echo "Before/after (median of $RUNS runs; new = ${VMAD#"$SRCDIR"/}, old = ${VMAD_OLD#"$SRCDIR"/}):"
    echo
    echo "| measurement | cache | vmad (old) | vmad | new / old |"
    echo "|---|---|---:|---:|---:|"
    for mode in "${modes[@]}"; do
        for kind in file exec; do
            if ! has_row "vmad-$kind" || ! has_row "old-$kind"; then continue; fi
            if [ "$kind" = file ]; then what="backup → new file"; else what="backup → exec:cat >/dev/null"; fi
            ba_row "$what, job s" "$mode" "$(median <<<"${JOB[$mode|old-$kind]}")" \
                "$(median <<<"${JOB[$mode|vmad-$kind]}")" %.2f
            [ "$kind" != file ] ||
                ba_row "$what, + sync s" "$mode" "$(median <<<"${SYNC[$mode|old-$kind]}")" \
                    "$(median <<<"${SYNC[$mode|vmad-$kind]}")" %.2f
            ba_row "$what, CPU s" "$mode" "$(median <<<"${CPU[$mode|old-$kind]}")" \
                "$(median <<<"${CPU[$mode|vmad-$kind]}")" %.2f
            ba_row "$what, peak RSS MiB" "$mode" \
                "$(maxof <<<"${RSS[$mode|old-$kind]}" | awk '{ print $1 / 1024 }')" \
                "$(maxof <<<"${RSS[$mode|vmad-$kind]}" | awk '{ print $1 / 1024 }')" %.1f
        done
    done
fi
