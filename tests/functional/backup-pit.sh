#!/usr/bin/env bash
# Point-in-time end-to-end test of the live backup: tests/tools/pit-writer keeps writing
# stamped data (writes, cluster-straddling and multi-cluster writes, write-zeroes, trims)
# over several NBD connections to three disks of odd sizes (16 MiB + 4.5 KiB, one 64 KiB
# cluster, 2 MiB + 512 opened with cache.direct=on) from before `backup` until after it
# finished, in 4 KiB-aligned requests and, in one case, 512-byte-granular ones (which the
# direct disk turns into read-modify-writes); pit-check.py then
# proves that the archive holds every disk as it was at one single instant inside the
# backup command, and that every acknowledged write is on the disks. Several seeds,
# max-workers 1/2/8, with and without a speed limit, a devlist, a slow exec: target that
# makes copy-before-write data spill to the fleecing directory. The checker must reject
# a plain `vma create` of the live disk files (no point in time) taken meanwhile, and its
# self-test must pass. Three backups in a row under one writer are each checked against
# their own instant. PIT_QUICK=1 runs fewer cases; PIT_SEED=N shifts every seed.
. "$(dirname "$0")/qmp-lib.bash"
requires pv fallocate
PIT_WRITER=$BUILDDIR/tests/tools/pit-writer
[ -x "$VMA" ] || fail "vma not built"
[ -x "$PIT_WRITER" ] || fail "$PIT_WRITER not built (make test-build)"
export PIT_WRITER

python3 "$SRCDIR/tests/functional/pit-check.py" selftest || fail "pit-check.py selftest"

mkdir "$T/fleece" "$T/out"
truncate -s $((16 * 1048576 + 4608)) "$T/d0.raw"
truncate -s 65536 "$T/d1.raw"
# the direct disk lives in the build tree: /tmp may be a tmpfs, which has no O_DIRECT
new_tmpdir DIRECT_DIR "$BUILDDIR"
D2=$DIRECT_DIR/d2.raw
truncate -s $((2 * 1048576 + 512)) "$D2"
export D2
# trims are checked as zeros: only where the file systems punch holes
trim=
if ! fallocate -p -o 0 -l 4096 "$T/d1.raw" 2>/dev/null ||
    ! fallocate -p -o 0 -l 4096 "$D2" 2>/dev/null; then
    trim=--no-trim
fi
export PIT_TRIM=$trim
printf 'memory: 512\nname: pit\n' >"$T/vm.conf"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --blockdev "driver=file,node-name=drive-virtio0,filename=$D2,cache.direct=on" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on" \
    --export "nbd,id=e2,node-name=drive-virtio0,writable=on" \
    --fleecing-dir "$T/fleece" --backup-buffer-size 2M
wait_socket "$T/qmp.sock"
export VMAD_PID

py "$T" <<'EOF' || fail "point-in-time backups"
import os, subprocess, sys, time
from qmp import QMP
from pitlib import Writer, start_backup, wait_backup, pit_check

T = sys.argv[1]
SRCDIR, VMA, TOOL = os.environ["SRCDIR"], os.environ["VMA"], os.environ["PIT_WRITER"]
EXTRA = [os.environ["PIT_TRIM"]] if os.environ["PIT_TRIM"] else []
QUICK = os.environ.get("PIT_QUICK") == "1"
SEED = int(os.environ.get("PIT_SEED", "0"))       # added to every seed below
DISKS = {"drive-scsi0": T + "/d0.raw", "drive-scsi1": T + "/d1.raw",
         "drive-virtio0": os.environ["D2"]}
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()

def uri(name):
    return "nbd+unix:///%s?socket=%s/nbd.sock" % (name, T)

def spill_size():
    """Bytes in vmad's fleecing file (an unlinked file in the fleecing directory)."""
    pid = int(os.environ["VMAD_PID"])
    size = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(T + "/fleece/"):
                size = max(size, os.stat("/proc/%d/fd/%s" % (pid, fd)).st_size)
        except OSError:
            pass
    return size

def run(name, seed, names, args, target=None, warm=300, after=300, unit=4096, spill=False):
    """One backup while pit-writer writes to `names`; check it; return a summary."""
    t0 = time.monotonic()
    log = "%s/%s.log" % (T, name)
    out = "%s/out/%s.vma" % (T, name)
    seed += SEED
    w = Writer(TOOL, log, [uri(n) for n in names], seed=seed,
               extra=EXTRA + ["--unit", str(unit)])
    try:
        w.prefill()
        w.start()
        acked0 = w.wait_acked(warm)
        args = dict(args, **{"backup-file": target(out) if target else out,
                             "config-file": T + "/vm.conf"})
        sent, uuid, returned = start_backup(q, args)
        acked1 = w.stats()[0]
        spilled = 0
        while spill and q.ok("query-backup")["status"] == "active":
            spilled = max(spilled, spill_size())
            time.sleep(0.01)
        st = wait_backup(q)
        acked2 = w.stats()[0]
        # keep writing a little after the end: the hooks are gone, the disks live on
        w.wait_acked(acked2 + after)
        res = w.stop()
    finally:
        w.kill()
    assert st["status"] == "done", "%s: backup ended %r" % (name, st)
    assert not spill or spilled > 0, "%s: nothing was spilled to the fleecing file" % name
    assert st["uuid"] == uuid and st["transferred"] == st["total"], st
    assert st["total"] == sum(os.path.getsize(DISKS[n]) for n in names), st
    q.events.clear()
    rc, msg = pit_check(SRCDIR, "pit", log, "--archive", out, "--vma", VMA,
                        "--sent", sent, "--returned", returned)
    if rc != 0:
        print("%s: %s" % (name, msg), file=sys.stderr)
        raise SystemExit("%s (seed %d, %r): the archive is not a point-in-time copy"
                         % (name, seed, args))
    f = dict(kv.split("=") for kv in msg.split()[2:])
    # the backup must have run while the disks changed, or it proves nothing
    assert int(f["rewritten"]) > 0, "%s: no block was rewritten during the backup: %s" % (name, msg)
    images = ["--image=%d=%s" % (i, DISKS[n]) for i, n in enumerate(names)]
    rc, msg2 = pit_check(SRCDIR, "final", log, *images)
    if rc != 0:
        print("%s: %s" % (name, msg2), file=sys.stderr)
        raise SystemExit("%s: an acknowledged write is not on the disk" % name)
    os.unlink(out)
    print("%-10s seed=%d %-46s ops=%d during-backup=%d rewritten=%s zero=%s %.1fs"
          % (name, seed, " ".join("%s=%s" % kv for kv in sorted(args.items())
                                   if kv[0] not in ("backup-file", "config-file")),
             res["ops"], acked2 - acked1, f["rewritten"], f["zero"], time.monotonic() - t0))

ALL = list(DISKS)
run("mw1", 1, ALL, {"max-workers": 1})
run("mw8", 2, ALL, {"max-workers": 8})
run("mw1-speed", 3, ALL, {"max-workers": 1, "speed": 12 << 20})
if not QUICK:
    run("mw8-speed", 4, ["drive-scsi1", "drive-scsi0"],
        {"max-workers": 8, "speed": 16 << 20, "devlist": "drive-scsi1,drive-scsi0"})
    # a slow target: copy-before-write data outgrows the 2 MiB buffer and spills
    run("slow-exec", 5, ALL, {"max-workers": 2},
        target=lambda out: "exec:pv -q -L 8m > '%s'" % out, spill=True)
    run("default", 6, ["drive-virtio0", "drive-scsi1"], {"devlist": "drive-virtio0;drive-scsi1"})
    # 512-byte-granular requests, not 4 KiB-aligned
    run("unit512", 7, ALL, {"max-workers": 4, "speed": 16 << 20}, unit=512)

# Back to back: one writer runs on through three backups (hooks are removed and
# installed again while requests are in flight); each archive is checked against its
# own instant in the one log.
t0 = time.monotonic()
log = T + "/b2b.log"
w = Writer(TOOL, log, [uri(n) for n in ALL], seed=SEED + 8, extra=EXTRA)
cuts = []
try:
    w.prefill()
    w.start()
    w.wait_acked(200)
    for i, args in enumerate(({"max-workers": 8}, {"max-workers": 1, "speed": 32 << 20},
                              {"max-workers": 2})):
        out = "%s/out/b2b-%d.vma" % (T, i)
        sent, uuid, returned = start_backup(q, dict(args, **{"backup-file": out}))
        st = wait_backup(q)
        assert st["status"] == "done" and st["uuid"] == uuid, st
        cuts.append((out, sent, returned))
    w.wait_acked(w.stats()[0] + 200)
    res = w.stop()
finally:
    w.kill()
q.events.clear()
for out, sent, returned in cuts:
    rc, msg = pit_check(SRCDIR, "pit", log, "--archive", out, "--vma", VMA,
                        "--sent", sent, "--returned", returned)
    assert rc == 0, "back-to-back %s: %s" % (out, msg)
    os.unlink(out)
rc, msg = pit_check(SRCDIR, "final", log,
                    *["--image=%d=%s" % (i, DISKS[n]) for i, n in enumerate(ALL)])
assert rc == 0, "back-to-back: %s" % msg
print("%-10s seed=%d three backups in a row, one writer      ops=%d %.1fs"
      % ("b2b", SEED + 8, res["ops"], time.monotonic() - t0))
assert os.listdir(T + "/fleece") == [], os.listdir(T + "/fleece")

# The checker must reject what a backup without copy-before-write would produce: a
# `vma create` of the live disk files, read at 16 MiB/s while pit-writer writes.
caught = 0
for attempt in range(3):
    log = "%s/neg%d.log" % (T, attempt)
    out = "%s/out/neg%d.vma" % (T, attempt)
    w = Writer(TOOL, log, [uri(n) for n in ALL], seed=100 + attempt, extra=EXTRA)
    try:
        w.prefill()
        w.start()
        w.wait_acked(300)
        sent = time.monotonic_ns()
        p = subprocess.run([VMA, "create", "exec:pv -q -L 16m > '%s'" % out]
                           + [a for n in ALL for a in ("-d", "format=raw:%s=%s" % (n, DISKS[n]))],
                           capture_output=True, text=True)
        returned = time.monotonic_ns()
        res = w.stop()
    finally:
        w.kill()
    assert p.returncode == 0, p.stderr
    rc, msg = pit_check(SRCDIR, "pit", log, "--archive", out, "--vma", VMA,
                        "--sent", sent, "--returned", returned)
    os.unlink(out)
    print("negative %d: ops=%d check %s: %s" % (attempt, res["ops"],
                                               "rejected" if rc else "ACCEPTED", msg[:200]))
    if rc != 0:
        caught += 1
        break
assert caught, "pit-check accepted every plain copy of live disks: it cannot fail"
q.close()
EOF
quit_vmad
echo PASS
