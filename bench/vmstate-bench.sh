#!/usr/bin/env bash
# vmstate-bench.sh — a live backup of a running 512 MiB guest with and without its RAM
# state (backup vm-monitor): total time, the guest's downtime, archive size.
#
# The guest is the test guest (scripts/guest-initrd.sh) in counter mode with ticks on:
# besides its counter steps (a 4 KiB O_DIRECT write with a flush each) a background loop
# prints "GUEST-TICK" every 10 ms on the serial console. QEMU runs under TCG with -m 512
# on a 256 MiB disk that vmad serves over NBD. The guest's own clock stops while QEMU
# has the VM stopped (TCG's virtual clock), so the pause is measured on the host: every
# console line is time-stamped as it arrives (CLOCK_MONOTONIC), and the downtime is the
# largest gap between two ticks while the backup ran (the baseline gap of an idle run
# is the first row's). vmad's own figure (query-backup vmstate-downtime: QEMU's STOP
# event to vmad's cont) is shown beside it.
#
# Rows (RUNS times each, interleaved): disks only (backup without vm-monitor), whole VM
# (backup with vm-monitor). The clock runs from the backup command to status done; the
# archive is a new file on BENCH_TMPDIR.
#
# Environment: RUNS=3, MEM=512, BENCH_TMPDIR (default bench/scratch), VMAD=, VMA=.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMAD=${VMAD:-$BUILDDIR/vmad}
VMA=${VMA:-$BUILDDIR/vma}
RUNS=${RUNS:-3}
MEM=${MEM:-512}
BENCH_TMPDIR=${BENCH_TMPDIR:-$HERE/scratch}
export SRCDIR BUILDDIR VMAD VMA
set +e +u
. "$SRCDIR/tests/lib.bash"
. "$SRCDIR/tests/functional/guest.bash"
set -u
die() { echo "vmstate-bench: $*" >&2; exit 1; }
[ -x "$VMAD" ] && [ -x "$VMA" ] || die "build vmad and vma first (make)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed"
mkdir -p "$BENCH_TMPDIR"
new_tmpdir W "$BENCH_TMPDIR"
guest_prepare

truncate -s 256M "$W/a.raw"
"$VMAD" --monitor "$W/qmp.sock" --blockdev "driver=file,node-name=drive-scsi0,filename=$W/a.raw" \
    --nbd-server "addr.type=unix,addr.path=$W/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" >"$W/vmad.log" 2>&1 &
cleanup_pid $!
wait_socket "$W/qmp.sock"
wait_socket "$W/nbd.sock"

qemu-system-x86_64 -accel tcg -m "$MEM" -smp 1 -nographic -nodefaults -no-reboot -serial stdio \
    -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 guest.mode=counter guest.disks=1 guest.blocks=4096 guest.ticks=1" \
    -qmp "unix:$W/vm.qmp,server=on,wait=off" \
    -blockdev "driver=nbd,node-name=disk0,server.type=unix,server.path=$W/nbd.sock,export=drive-scsi0,cache.direct=on" \
    -device virtio-blk-pci,drive=disk0 </dev/null 2>&1 |
    python3 -u -c 'import sys, time
for l in sys.stdin:
    sys.stdout.write("%.6f %s" % (time.monotonic(), l)); sys.stdout.flush()' >"$W/console" &
cleanup_pid $!
for i in $(seq 600); do
    grep -q 'GUEST-COUNT 5' "$W/console" 2>/dev/null && break
    sleep 0.2
done
grep -q 'GUEST-COUNT 5' "$W/console" || die "the guest did not start counting"

echo "vmstate-bench: ${MEM} MiB guest (TCG), 256 MiB disk, RUNS=$RUNS, on $BENCH_TMPDIR" >&2
PYTHONPATH="$SRCDIR/tests/functional" python3 - "$W" "$RUNS" <<'EOF'
import os, re, sys, time
from qmp import QMP
W, RUNS = sys.argv[1], int(sys.argv[2])
q = QMP(W + "/qmp.sock", timeout=600)
q.negotiate()

def ticks(t0, t1):
    out = []
    for line in open(W + "/console", errors="replace"):
        m = re.match(r"(\d+\.\d+) GUEST-TICK", line)
        if m:
            t = float(m.group(1))
            if t0 - 0.5 <= t <= t1 + 0.5:
                out.append(t)
    return out

rows = {"disks only": [], "whole VM": []}
for run in range(RUNS):
    for name in rows:
        out = "%s/%d-%s.vma" % (W, run, name.replace(" ", "-"))
        args = {"backup-file": out}
        if name == "whole VM":
            args["vm-monitor"] = W + "/vm.qmp"
        t0 = time.monotonic()
        q.ok("backup", args)
        while True:
            st = q.ok("query-backup")
            if st["status"] != "active":
                break
            time.sleep(0.02)
        t1 = time.monotonic()
        assert st["status"] == "done", st
        time.sleep(0.6)
        ts = ticks(t0, t1)
        gap = max((b - a for a, b in zip(ts, ts[1:])), default=float("nan"))
        rows[name].append((t1 - t0, gap * 1000, st.get("vmstate-downtime", 0),
                           os.path.getsize(out), st.get("vmstate-bytes", 0)))
        os.unlink(out)

print("| backup | total time (s) | largest gap between guest ticks (ms) | vmad's downtime (ms) | archive (MiB) | VM state (MiB) |")
print("|---|---|---|---|---|---|")
for name, rs in rows.items():
    med = lambda i: sorted(r[i] for r in rs)[len(rs) // 2]
    rng = lambda i, f: "%s (%s..%s)" % (f % med(i), f % min(r[i] for r in rs), f % max(r[i] for r in rs))
    print("| %s | %s | %s | %s | %.1f | %.1f |" % (name, rng(0, "%.2f"), rng(1, "%.0f"),
          rng(2, "%d") if name == "whole VM" else "-", med(3) / 2**20, med(4) / 2**20))
EOF
