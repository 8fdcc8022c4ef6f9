#!/usr/bin/env bash
# Live backup of a disk that vmad reaches through its nbd driver — a qcow2 image
# exported by qemu-storage-daemon — together with a file disk, point-in-time exact.
# tests/tools/pit-writer writes stamped data (writes, cluster-straddling and multi-cluster
# writes, FUA, write-zeroes) to both disks through vmad's NBD export from before `backup`
# until after it finished; pit-check.py proves that the archive holds both disks as they
# were at one instant inside the backup command, and that every acknowledged write is on
# the disks (the qcow2 image read back by qemu-img after the server stopped). Two backups:
# max-workers 1 with a speed limit, max-workers 8. (Trims are left out: qcow2 ignores
# discards that do not cover whole clusters, so a trimmed range need not read as zeros.)
# Then a sparse qcow2 disk (a 64 MiB image with three written clusters) is backed up
# quiescent: its unallocated clusters come back as holes in the archive (which stays small),
# and the extracted disk equals `qemu-img convert -O raw` of the image.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-storage-daemon qemu-img qemu-io
PIT_WRITER=$BUILDDIR/tests/tools/pit-writer
[ -x "$VMA" ] || fail "vma not built"
[ -x "$PIT_WRITER" ] || fail "$PIT_WRITER not built (make test-build)"
export PIT_WRITER
MiB=1048576

qemu-img create -q -f qcow2 "$T/live.qcow2" 16M || fail "qemu-img create live"
qemu-img create -q -f qcow2 "$T/sparse.qcow2" 64M || fail "qemu-img create sparse"
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" -c "write -P 0x6b 20M 1M" -c "write -P 0x7c 63M 1M" \
    "$T/sparse.qcow2" >/dev/null || fail "qemu-io sparse"
truncate -s $((4 * MiB + 4608)) "$T/d1.raw"
printf 'memory: 512\nname: nbdpit\n' >"$T/vm.conf"
mkdir "$T/out" "$T/x"

qemu-storage-daemon \
    --blockdev "driver=file,node-name=f0,filename=$T/live.qcow2" \
    --blockdev "driver=qcow2,node-name=q0,file=f0" \
    --blockdev "driver=file,node-name=f1,filename=$T/sparse.qcow2" \
    --blockdev "driver=qcow2,node-name=q1,file=f1" \
    --nbd-server "addr.type=unix,addr.path=$T/qsd.sock" \
    --export "type=nbd,id=x0,node-name=q0,name=live,writable=on" \
    --export "type=nbd,id=x1,node-name=q1,name=sparse,writable=on" >"$T/qsd.log" 2>&1 &
QSD_PID=$!
cleanup_pid $QSD_PID
wait_socket "$T/qsd.sock"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=nbd,node-name=drive-scsi0,server.type=unix,server.path=$T/qsd.sock,export=live" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --blockdev "driver=nbd,node-name=drive-scsi2,server.type=unix,server.path=$T/qsd.sock,export=sparse" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on"

py "$T" <<'EOF' || fail "point-in-time backups of an nbd disk and a file disk"
import os, sys, time
from qmp import QMP
from pitlib import Writer, start_backup, wait_backup, pit_check

T = sys.argv[1]
SRCDIR, VMA, TOOL = os.environ["SRCDIR"], os.environ["VMA"], os.environ["PIT_WRITER"]
NAMES = ["drive-scsi0", "drive-scsi1"]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()

def uri(name):
    return "nbd+unix:///%s?socket=%s/nbd.sock" % (name, T)

def run(name, seed, args):
    t0 = time.monotonic()
    log = "%s/%s.log" % (T, name)
    out = "%s/out/%s.vma" % (T, name)
    w = Writer(TOOL, log, [uri(n) for n in NAMES], seed=seed, extra=["--no-trim"])
    try:
        w.prefill()
        w.start()
        w.wait_acked(200)
        sent, uuid, returned = start_backup(q, dict(args, **{
            "backup-file": out, "config-file": T + "/vm.conf",
            "devlist": ",".join(NAMES)}))
        acked1 = w.stats()[0]
        st = wait_backup(q)
        acked2 = w.stats()[0]
        w.wait_acked(acked2 + 200)
        res = w.stop()
    finally:
        w.kill()
    assert st["status"] == "done" and st["uuid"] == uuid, "%s: %r" % (name, st)
    q.events.clear()
    rc, msg = pit_check(SRCDIR, "pit", log, "--archive", out, "--vma", VMA,
                        "--sent", sent, "--returned", returned)
    if rc != 0:
        raise SystemExit("%s (seed %d): not a point-in-time copy: %s" % (name, seed, msg))
    f = dict(kv.split("=") for kv in msg.split()[2:])
    assert int(f["rewritten"]) > 0, "%s: nothing rewritten during the backup: %s" % (name, msg)
    os.rename(log, "%s/final-%s.log" % (T, name))
    os.unlink(out)
    print("%-8s seed=%d ops=%d during-backup=%d rewritten=%s %.1fs"
          % (name, seed, res["ops"], acked2 - acked1, f["rewritten"], time.monotonic() - t0))

run("mw1", 21, {"max-workers": 1, "speed": 16 << 20})
run("mw8", 22, {"max-workers": 8})

sent, uuid, returned = start_backup(q, {"backup-file": T + "/out/all.vma",
                                        "config-file": T + "/vm.conf"})
st = wait_backup(q)
assert st["status"] == "done" and st["total"] == (16 << 20) + (4 << 20) + 4608 + (64 << 20), st
q.close()
EOF

quit_vmad
kill $QSD_PID && wait $QSD_PID 2>/dev/null
forget_pid $QSD_PID
check_log

# every acknowledged write of the last writer is on the disks
qemu-img convert -f qcow2 -O raw "$T/live.qcow2" "$T/live.raw" || fail "qemu-img convert live"
out=$(python3 "$SRCDIR/tests/functional/pit-check.py" final "$T/final-mw8.log" \
    "--image=0=$T/live.raw" "--image=1=$T/d1.raw" 2>&1) ||
    fail "an acknowledged write is not on the disks: $out"

"$VMA" verify "$T/out/all.vma" || fail "vma verify"
"$VMA" extract "$T/out/all.vma" "$T/x/r" || fail "vma extract"
qemu-img convert -f qcow2 -O raw "$T/sparse.qcow2" "$T/sparse.raw" || fail "convert sparse"
for pair in "drive-scsi0:$T/live.raw" "drive-scsi2:$T/sparse.raw" "drive-scsi1:$T/d1.raw"; do
    dev=${pair%%:*} src=${pair#*:}
    f=$T/x/r/disk-$dev.raw
    [ -f "$f" ] || fail "no $f after extract: $(ls "$T/x/r")"
    cmp "$f" "$src" || fail "restored $dev differs from $src"
done
is_sparse "$T/x/r/disk-drive-scsi2.raw" || fail "the restored sparse nbd disk is not sparse"
size=$(stat -c %s "$T/out/all.vma")
[ "$size" -lt $((30 * MiB)) ] || fail "archive of 16M + 4M + a sparse 64M is $size bytes"
