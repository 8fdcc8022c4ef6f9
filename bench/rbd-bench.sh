#!/usr/bin/env bash
# rbd-bench.sh — live backup of a Ceph RBD image: vmad (driver rbd, librbd) against QEMU's
# blockdev-backup job over QEMU's rbd driver (qemu-storage-daemon with qemu-block-extra),
# on the same one-node cluster in the same run.
#
# The cluster is tests/functional/ceph.bash's: one monitor and one memstore OSD on
# 127.0.0.1 (data in the OSD's memory: the cluster's network and CPU cost are measured,
# not a disk's). The image is SIZE bytes (default 2 GiB) of 4 MiB objects, every other
# object written with random data and the rest never written (half allocated), made with
# `rbd import` of a sparse file. Default image features (exclusive-lock, object-map,
# fast-diff): both tools skip the unwritten half by block status (librbd's diff iterate).
#
# Rows (RUNS times each, interleaved: run 1 of every row, then run 2, ...):
#   vmad backup -> exec:cat >/dev/null   QMP backup, the VMA stream thrown away
#   QSD blockdev-backup -> null-co       src: raw over rbd; sync=full,
#                                        x-perf {max-workers: 8, max-chunk: 1 MiB}
#   vmad backup -> new file              the archive on BENCH_TMPDIR (vmad fdatasyncs it)
#   the two vmad rows again with max-workers 8 (QSD's job runs 8 workers)
#   QSD blockdev-backup -> raw file      a raw file of the image's size, synced after
# A daemon is started fresh for every measurement; the clock runs from the backup command
# to BLOCK_JOB_COMPLETED (for the file rows plus a sync of the output). CPU: the daemon's
# user + system time during the job. Checked once: `vma verify` of vmad's archive and
# `cmp` of QSD's raw target with the image exported by `rbd export`.
#
# Environment: SIZE=2G, RUNS=3, BENCH_TMPDIR (default bench/scratch), VMAD=, VMA=,
# ROWS= (a subset of: vmad-exec vmad-exec8 qsd-null vmad-file vmad-file8 qsd-raw).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMAD=${VMAD:-$BUILDDIR/vmad}
VMA=${VMA:-$BUILDDIR/vma}
SIZE=${SIZE:-2G}
RUNS=${RUNS:-3}
BENCH_TMPDIR=${BENCH_TMPDIR:-$HERE/scratch}
export SRCDIR BUILDDIR VMAD VMA
set +e +u
. "$SRCDIR/tests/lib.bash"
. "$SRCDIR/tests/functional/ceph.bash"
set -u
die() { echo "rbd-bench: $*" >&2; exit 1; }
for t in qemu-storage-daemon rbd python3 cmp; do
    command -v "$t" >/dev/null || die "$t is not installed"
done
ls /usr/lib/*/qemu/block-rbd.so >/dev/null 2>&1 || die "QEMU's rbd driver (qemu-block-extra) is missing"
[ -x "$VMAD" ] && [ -x "$VMA" ] || die "build vmad and vma first (make)"
size_bytes=$(numfmt --from=iec "$SIZE")
mkdir -p "$BENCH_TMPDIR"
new_tmpdir WORK "$BENCH_TMPDIR"

ceph_start
echo "rbd-bench: cluster up in $CEPH_UP_SECS s"
python3 - "$WORK/src.raw" "$size_bytes" <<'EOF'
import os, sys
obj = 4 << 20
with open(sys.argv[1], "wb") as f:
    f.truncate(int(sys.argv[2]))
    for off in range(0, int(sys.argv[2]), 2 * obj):
        f.seek(off)
        f.write(os.urandom(min(obj, int(sys.argv[2]) - off)))
EOF
t0=$(date +%s.%N)
rbd_cli import --no-progress "$WORK/src.raw" "$CEPH_POOL/bench" >/dev/null || die "rbd import"
echo "rbd-bench: imported $SIZE (half allocated) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
rbd_cli du "$CEPH_POOL/bench" 2>/dev/null | tail -n 1 || true
rm -f "$WORK/src.raw"

QMP_SOCK=$WORK/qmp.sock
OUT=$WORK/out
DAEMON_PID=

cat >"$WORK/drive.py" <<'EOF'
import json, os, sys, time
sys.path.insert(0, os.path.join(os.environ["SRCDIR"], "tests", "functional"))
from qmp import QMP
mode, sock, target = sys.argv[1:4]
q = QMP(sock, timeout=600)
q.negotiate()
if mode == "vmad":
    t0 = time.monotonic()
    args = {"backup-file": target}
    if len(sys.argv) > 4:
        args["max-workers"] = int(sys.argv[4])
    q.ok("backup", args)
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=600)
    secs = time.monotonic() - t0
    st = q.ok("query-backup")
    assert st["status"] == "done" and "error" not in ev["data"], (ev, st)
else:
    conf, size = sys.argv[4], int(sys.argv[5])
    q.ok("blockdev-add", {"node-name": "src", "driver": "raw",
                          "file": {"driver": "rbd", "pool": "rbd", "image": "bench",
                                   "conf": conf}})
    if target == "null":
        q.ok("blockdev-add", {"node-name": "tgt", "driver": "null-co", "size": size})
    else:
        q.ok("blockdev-add", {"node-name": "tgt", "driver": "raw",
                              "file": {"driver": "file", "filename": target}})
    t0 = time.monotonic()
    q.ok("blockdev-backup", {"job-id": "b0", "device": "src", "target": "tgt",
                             "sync": "full", "x-perf": {"max-workers": 8,
                                                        "max-chunk": 1 << 20}})
    ev = q.event("BLOCK_JOB_COMPLETED", timeout=600)
    secs = time.monotonic() - t0
    assert "error" not in ev["data"] and ev["data"]["offset"] == ev["data"]["len"], ev
print(json.dumps({"seconds": secs}))
EOF

cpu_secs() {
    local st
    st=$(cat "/proc/$DAEMON_PID/stat")
    st=${st##*) }
    awk -v hz="$(getconf CLK_TCK)" '{ print ($12 + $13) / hz }' <<<"$st"
}
wait_sock() {
    local i
    for i in $(seq 600); do
        [ -S "$1" ] && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited: $(tail -n 5 "$WORK/daemon.log")"
        sleep 0.05
    done
    die "no socket $1"
}
stop_daemon() {
    kill "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    forget_pid "$DAEMON_PID"
    DAEMON_PID=
}

declare -A WALL CPU
declare -A NAME=(
    [vmad-exec]="vmad backup → exec:cat >/dev/null"
    [vmad-exec8]="vmad backup, max-workers 8 → exec:cat"
    [vmad-file8]="vmad backup, max-workers 8 → new file"
    [qsd-null]="QSD blockdev-backup → null-co"
    [vmad-file]="vmad backup → new file"
    [qsd-raw]="QSD blockdev-backup → raw file"
)
ROWS=${ROWS:-"vmad-exec vmad-exec8 qsd-null vmad-file vmad-file8 qsd-raw"}

one() {   # one ROW RUN
    local row=$1 run=$2 res c0 c1 t1 t2 secs target workers=()
    rm -f "$QMP_SOCK" "$OUT"
    case $row in
    vmad-*)
        "$VMAD" --blockdev "driver=rbd,node-name=drive-scsi0,pool=rbd,image=bench,conf=$CEPH_CONF" \
            --monitor "$QMP_SOCK" >"$WORK/daemon.log" 2>&1 </dev/null &
        DAEMON_PID=$!
        cleanup_pid "$DAEMON_PID"
        wait_sock "$QMP_SOCK"
        case $row in vmad-exec*) target="exec:cat >/dev/null" ;; *) target=$OUT ;; esac
        case $row in *8) workers=(8) ;; esac
        c0=$(cpu_secs)
        res=$(python3 "$WORK/drive.py" vmad "$QMP_SOCK" "$target" "${workers[@]}") ||
            die "${NAME[$row]} failed"
        ;;
    qsd-*)
        qemu-storage-daemon --chardev "socket,id=m0,path=$QMP_SOCK,server=on,wait=off" \
            --monitor chardev=m0 >"$WORK/daemon.log" 2>&1 </dev/null &
        DAEMON_PID=$!
        cleanup_pid "$DAEMON_PID"
        wait_sock "$QMP_SOCK"
        if [ "$row" = qsd-raw ]; then
            qemu-img create -q -f raw "$OUT" "$size_bytes"
            target=$OUT
        else
            target=null
        fi
        c0=$(cpu_secs)
        res=$(python3 "$WORK/drive.py" qsd "$QMP_SOCK" "$target" "$CEPH_CONF" "$size_bytes") ||
            die "${NAME[$row]} failed: $(tail -n 3 "$WORK/daemon.log")"
        ;;
    esac
    c1=$(cpu_secs)
    t1=$(date +%s.%N)
    case $row in *-file* | qsd-raw) sync "$OUT" ;; esac
    t2=$(date +%s.%N)
    stop_daemon
    secs=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])' <<<"$res")
    secs=$(awk -v s="$secs" -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", s + b - a }')
    WALL[$row]+="$secs "
    CPU[$row]+="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }') "
    printf 'rbd-bench: run %d %-36s %7.3f s\n' "$run" "${NAME[$row]}" "$secs" >&2
    if [ "$run" = 1 ] && [ "$row" = vmad-file ]; then
        "$VMA" verify "$OUT" >/dev/null || die "vma verify of vmad's archive failed"
    fi
    if [ "$run" = 1 ] && [ "$row" = qsd-raw ]; then
        rbd_cli export --no-progress "$CEPH_POOL/bench" "$WORK/exported.raw" >/dev/null
        cmp "$WORK/exported.raw" "$OUT" || die "QSD's raw target differs from the image"
        rm -f "$WORK/exported.raw"
    fi
    rm -f "$OUT"
}

for run in $(seq 1 "$RUNS"); do
    for row in $ROWS; do
        one "$row" "$run"
    done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "RBD image: $SIZE ($size_bytes bytes), half allocated (every other 4 MiB object), memstore OSD on 127.0.0.1"
echo "Peers: $(qemu-storage-daemon --version | head -1), librbd $(dpkg-query -W -f='${Version}' librbd1 2>/dev/null)"
echo
echo "| operation | median s | runs (s) | GiB/s of image | CPU s (median) | vs QSD, same kind of destination |"
echo "|---|---:|---|---:|---:|---:|"
declare -A PEER=([vmad-exec]=qsd-null [vmad-exec8]=qsd-null [vmad-file]=qsd-raw [vmad-file8]=qsd-raw)
for row in $ROWS; do
    m=$(median "${WALL[$row]}")
    c=$(median "${CPU[$row]}")
    ratio=
    if [ -n "${PEER[$row]:-}" ]; then
        ratio=$(awk -v a="$m" -v b="$(median "${WALL[${PEER[$row]}]}")" 'BEGIN { printf "%.2f", a / b }')
    fi
    printf '| %s | %.3f | %s| %.2f | %.2f | %s |\n' "${NAME[$row]}" "$m" "${WALL[$row]}" \
        "$(awk -v s="$size_bytes" -v t="$m" 'BEGIN { print s / t / 1073741824 }')" "$c" "$ratio"
done
echo
echo "Target: vmad at least QEMU's speed on RBD (ratio <= 1.00)."
