#!/usr/bin/env bash
# `make demo`: a live backup of a running guest's disks.
#
#   1. Two example disks: drive-scsi0 (64 MiB, the guest's busy disk, partly random) and
#      drive-scsi1 (32 MiB, random, left alone).
#   2. vmad owns them and serves them over NBD; a real guest (QEMU, TCG) boots with both
#      as virtio disks and rewrites a range of drive-scsi0 over and over, every 4 KiB block
#      stamped "gen=G blk=B" (pass G, block B), announcing each finished pass.
#   3. While the guest writes, `vma backup` asks vmad over QMP for a backup of both disks
#      into one VMA archive, following its progress as vzdump logs it.
#   4. A change bitmap on both disks made that first backup the base of a chain; a second,
#      incremental backup while the guest goes on stores only the clusters it rewrote.
#   5. The guest is stopped, then `vma verify` and `vma extract` run on the archives, and
#      the extracted disks are checked: drive-scsi0 must be one instant of the guest's
#      work (every block of the range from pass G or G+1, as one pass in progress, within
#      the passes the guest was at during the backup), everything outside the range and
#      all of drive-scsi1 exactly as before; the same for the chain (full + incremental)
#      at the incremental's instant, and `vma merge` turns the chain into one archive.
#   6. The archive as a disk: `vma serve` exports its disks over NBD without extracting
#      them, and a live restore serves drive-scsi1 from the archive at once while
#      block-stream copies it to a new target in the background.
#   7. The web console: vma-web finds this vmad in its run directory; through the JSON
#      API its page uses, "Backup now" (zstd) and a verify of the new archive.
#   8. The whole VM: a guest counting in RAM and on its disk is backed up with its RAM and
#      device state (backup vm-monitor, QEMU's own migration at the disks' instant),
#      stopped, and resumed in a new QEMU from the archive (tests/functional/
#      vmstate-resume.sh, which checks that RAM and disk are of one instant).
#
# Then the archive half on its own: scripts/demo-archive.sh (create, list, verify,
# extract, and a Proxmox-written zstd archive from stdin).
set -euo pipefail
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
export SRCDIR BUILDDIR
VMA=${VMA:-$BUILDDIR/vma}
VMAD=${VMAD:-$BUILDDIR/vmad}
export VMA VMAD
. "$SRCDIR/tests/functional/guest.bash"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmabackup-demo.XXXXXX")
vmad_pid= serve_pid= restore_pid= web_pid=
cleanup() {
    guest_cleanup
    for p in $serve_pid $restore_pid $web_pid; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    if [ -n "$vmad_pid" ] && kill -0 "$vmad_pid" 2>/dev/null; then
        kill -TERM "$vmad_pid"
        wait "$vmad_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

first=256 blocks=1024 stop=16     # the guest's range: blocks 256..1279 (4 MiB) of drive-scsi0

step "prepare the guest (a Debian cloud kernel and a busybox initramfs; cached)"
guest_prepare

step "two example disks"
cd "$work"
truncate -s 64M disk0.raw
truncate -s 32M disk1.raw
python3 - <<'PY'
import random
with open("disk0.raw", "r+b") as f:
    f.write(random.Random(1).randbytes(8 << 20))
with open("disk1.raw", "r+b") as f:
    f.seek(4 << 20)
    f.write(random.Random(2).randbytes(16 << 20))
PY
cp disk0.raw disk0.orig
cp disk1.raw disk1.orig
cp "$SRCDIR/tests/data/qemu-server.conf" .
ls -ls disk0.raw disk1.raw

step "vmad owns the disks: NBD exports and a QMP monitor"
set -x
"$VMAD" --blockdev driver=file,node-name=drive-scsi0,filename=disk0.raw \
        --blockdev driver=file,node-name=drive-scsi1,filename=disk1.raw \
        --nbd-server addr.type=unix,addr.path=nbd.sock \
        --export type=nbd,id=e0,node-name=drive-scsi0,writable=on \
        --export type=nbd,id=e1,node-name=drive-scsi1,writable=on \
        --monitor qmp.sock --pidfile vmad.pid &
{ set +x; } 2>/dev/null
vmad_pid=$!
for _ in $(seq 100); do
    [ -S qmp.sock ] && [ -S nbd.sock ] && break
    sleep 0.1
done
[ -S qmp.sock ] || die "vmad did not start"

step "boot a guest on them; it rewrites blocks $first..$((first + blocks - 1)) of drive-scsi0 in a loop"
guest_boot "$work/nbd.sock" drive-scsi0,drive-scsi1 loop first=$first blocks=$blocks seconds=600 stop=$stop
guest_wait_for "$GUEST_PID" '^GUEST-GEN 1$' >/dev/null || die "the guest did not finish its first pass"
before=$(guest_last_gen "$GUEST_PID")
echo "the guest has finished pass $before and keeps writing"

step "a change bitmap on both disks (QMP block-dirty-bitmap-add)"
python3 - <<'PY' || die "block-dirty-bitmap-add failed"
import os, sys
sys.path.insert(0, os.path.join(os.environ["SRCDIR"], "tests", "functional"))
from qmp import QMP
q = QMP("qmp.sock")
q.negotiate()
for disk in ("drive-scsi0", "drive-scsi1"):
    q.ok("block-dirty-bitmap-add", {"node": disk, "name": "demo", "persistent": True})
    print(f"bitmap 'demo' on {disk}")
PY

step "live backup of both disks while the guest writes (the bitmap's first: a full backup)"
echo "\$ vma backup --qmp qmp.sock -c qemu-server.conf --speed 16M --bitmap demo backup.vma"
"$VMA" backup --qmp qmp.sock -c qemu-server.conf --speed 16M --bitmap demo "$work/backup.vma"
after=$(guest_last_gen "$GUEST_PID")
echo "while the backup ran, the guest went on from pass $before to pass $after"

step "an incremental backup: only what the guest changed since the first one"
guest_wait_for "$GUEST_PID" "^GUEST-GEN $((after + 1))\$" >/dev/null ||
    die "the guest did not finish another pass"
inc_before=$(guest_last_gen "$GUEST_PID")
echo "\$ vma backup --qmp qmp.sock -c qemu-server.conf --bitmap demo inc1.vma"
"$VMA" backup --qmp qmp.sock -c qemu-server.conf --bitmap demo "$work/inc1.vma"
inc_after=$(guest_last_gen "$GUEST_PID")
ls -l backup.vma inc1.vma
"$VMA" list inc1.vma | grep '^CHAIN:'

step "stop the guest"
guest_stop_loop "$work/nbd.sock" drive-scsi0 $stop
res=$(guest_wait "$GUEST_PID") || die "guest: $res"
echo "guest: $res, $(guest_last_gen "$GUEST_PID") passes in all"

step "verify the archive"
"$VMA" verify -v backup.vma | grep -v '^progress'

step "extract it"
"$VMA" extract backup.vma restored
ls -ls restored

step "check the point-in-time state"
out=$(python3 "$GUEST_CHECK" loop restored/disk-drive-scsi0.raw --first $first --blocks $blocks \
      --min-gen "$before" --max-gen "$((after + 1))" --orig disk0.orig) ||
    die "drive-scsi0 is not one instant of the guest's writes"
read -r _ lo hi <<<"$out"
if [ "$lo" = "$hi" ]; then
    echo "drive-scsi0: every block of the range is from pass $lo: the backup instant fell between passes"
else
    echo "drive-scsi0: the range holds pass $hi up to some block and pass $lo after it:"
    echo "             the guest was in the middle of pass $hi at the backup's instant"
fi
python3 - "$first" "$blocks" <<'PY' || die "drive-scsi0 changed outside the guest's range"
import sys
first, blocks = int(sys.argv[1]), int(sys.argv[2])
a = open("restored/disk-drive-scsi0.raw", "rb").read()
b = open("disk0.orig", "rb").read()
lo, hi = first * 4096, (first + blocks) * 4096
assert len(a) == len(b) and a[:lo] == b[:lo] and a[hi:] == b[hi:]
PY
echo "drive-scsi0: everything outside the range is as it was"
cmp restored/disk-drive-scsi1.raw disk1.orig || die "drive-scsi1 differs"
echo "drive-scsi1: identical to the original"
cmp restored/qemu-server.conf qemu-server.conf && echo "qemu-server.conf: stored and restored"

step "the chain: verify, extract at the incremental's instant, merge"
"$VMA" verify --base backup.vma inc1.vma
"$VMA" extract --base backup.vma inc1.vma restored-inc
out=$(python3 "$GUEST_CHECK" loop restored-inc/disk-drive-scsi0.raw --first $first \
      --blocks $blocks --min-gen "$inc_before" --max-gen "$((inc_after + 1))" \
      --orig disk0.orig) || die "the chain's drive-scsi0 is not one instant of the guest's writes"
read -r _ lo hi <<<"$out"
echo "drive-scsi0 from the chain: one instant of the guest's work (passes $lo..$hi), later than the full backup's"
cmp restored-inc/disk-drive-scsi1.raw disk1.orig || die "the chain's drive-scsi1 differs"
echo "drive-scsi1 from the chain: identical to the original"
"$VMA" merge -o merged.vma --base backup.vma inc1.vma
"$VMA" extract merged.vma restored-merged
for d in drive-scsi0 drive-scsi1; do
    cmp "restored-merged/disk-$d.raw" "restored-inc/disk-$d.raw" || die "merge: $d differs"
done
echo "vma merge: one ordinary archive ($(stat -c %s merged.vma) bytes) of the chain's state"

step "the archive as a disk: vma serve exports it over NBD, nothing extracted"
"$VMA" serve backup.vma --socket serve.sock >serve.out 2>&1 &
serve_pid=$!
for _ in $(seq 100); do grep -q '^nbd+unix' serve.out && break; sleep 0.1; done
cat serve.out
qemu-img compare -f raw -F raw "nbd+unix:///drive-scsi1?socket=$work/serve.sock" disk1.orig ||
    die "vma serve: drive-scsi1 differs"
kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
serve_pid=

step "live restore: drive-scsi1 usable at once from the archive, copied in the background"
truncate -s 32M restore-target.raw
mkdir -p state
"$VMAD" --state-dir state --monitor restore-qmp.sock \
        --blockdev driver=vma,node-name=arch1,filename=backup.vma,device=drive-scsi1 \
        --blockdev driver=file,node-name=tgt1,filename=restore-target.raw \
        --blockdev driver=alloc-track,node-name=drive-scsi1,file=tgt1,backing=arch1 \
        --nbd-server addr.type=unix,addr.path=restore-nbd.sock \
        --export type=nbd,id=r1,node-name=drive-scsi1,writable=on &
restore_pid=$!
for _ in $(seq 100); do [ -S restore-qmp.sock ] && [ -S restore-nbd.sock ] && break; sleep 0.1; done
python3 - <<'PY' || die "live restore failed"
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.environ["SRCDIR"], "tests", "functional"))
from qmp import QMP
uri = "nbd+unix:///drive-scsi1?socket=restore-nbd.sock"
t0 = time.monotonic()
first = subprocess.run(["qemu-io", "-r", "-f", "raw", "-c", "read 4M 64k", uri],
                       capture_output=True, text=True)
assert first.returncode == 0, first.stderr
print("first read served after %.3f s, before any copy" % (time.monotonic() - t0))
q = QMP("restore-qmp.sock", timeout=60)
q.negotiate()
q.ok("block-stream", {"job-id": "restore-drive-scsi1", "device": "drive-scsi1"})
ev = q.event("BLOCK_JOB_COMPLETED", timeout=60)
print("block-stream done: %d bytes copied, %.3f s after the start" % (ev["data"]["len"],
                                                                       time.monotonic() - t0))
q.ok("quit")
PY
wait "$restore_pid" 2>/dev/null || true
restore_pid=
cmp restore-target.raw disk1.orig || die "the live-restored drive-scsi1 differs"
echo "restore-target.raw: identical to drive-scsi1 as backed up"

step "the web console: vma-web over this vmad (the JSON API the page uses): Backup now, verify"
mkdir -p web/run/100 web/backups
ln -s "$work/qmp.sock" web/run/100/qmp.sock
"$BUILDDIR/vma-web" --listen 127.0.0.1:0 --run-dir web/run --backup-dir web/backups --vma "$VMA" \
    >web.log 2>&1 &
web_pid=$!
for _ in $(seq 100); do grep -q '^vma-web: listening on ' web.log && break; sleep 0.1; done
url=$(sed -n 's/^vma-web: listening on //p' web.log | tail -1)
[ -n "$url" ] || { cat web.log; die "vma-web did not start"; }
echo "vma-web: $url (the page asks once for the token in web/backups/vma-web.token)"
WEB_URL=$url WEB_TOKEN=$(cat web/backups/vma-web.token) python3 - <<'PY' || die "web console failed"
import os, sys
sys.path.insert(0, os.path.join(os.environ["SRCDIR"], "tests", "functional"))
from webapi import Api
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
vm = api.get("/api/v1/vms")[0]
print("VM %s, disks %s" % (vm["id"], ", ".join(d["name"] if isinstance(d, dict) else str(d)
                                                for d in vm["disks"])))
t = api.wait_task(api.post("/api/v1/vms/100/backup", {"mode": "full", "compress": "zstd"})["task"])
assert t["status"] == "ok", t
b = api.backups("100")[0]
print("Backup now: %s, %d bytes, %s" % (b["name"], b["size"], b["kind"]))
t = api.wait_task(api.post("/api/v1/vms/100/backups/%s/verify" % b["name"])["task"])
assert t["status"] == "ok", t
print("verify: ok; verified = %s" % api.backups("100")[0]["verified"])
PY
kill -TERM "$web_pid"; wait "$web_pid" 2>/dev/null || true
web_pid=

step "the whole VM: RAM and device state in the archive, resumed in a new QEMU"
TESTDATA=$SRCDIR/tests/data bash "$SRCDIR/tests/functional/vmstate-resume.sh" 2>&1 |
    grep -v '^guest-initrd:' | sed 's/^/    /'
[ "${PIPESTATUS[0]}" = 0 ] || die "the whole-VM backup and resume failed"

step "the archive tool on its own"
cd "$SRCDIR"
BUILDDIR=$BUILDDIR VMA=$VMA scripts/demo-archive.sh | sed 's/^/    /'

echo
echo "demo: all good"
