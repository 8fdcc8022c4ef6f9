#!/usr/bin/env bash
# A live backup of a real guest's disk: QEMU (TCG) boots the test guest on a vmad NBD
# export in loop mode (it rewrites blocks 256..767 pass after pass with "gen=G blk=B"
# records, O_DIRECT, and prints GUEST-GEN G after each pass). While it loops, two backups
# run over QMP: a slow one (speed limit, one worker: the guest overtakes the background
# copy, so copy-before-write saves most of the range) and a fast one (eight workers).
# Each must end with status done, and the extracted disk must be a state the guest's
# disk really had: guest-check.py loop accepts the range only if it is one pass in
# progress (a prefix at generation G+1, the rest at G) with G no older than the last
# GUEST-GEN printed before backup was sent and G+1 no newer than the pass that may have
# been in progress when it returned; every byte outside the range equals the original
# image. The guest must keep completing passes while a backup runs, end by the stop
# marker with GUEST-RESULT ok, and its disk must hold the last pass afterwards.
set -u
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/guest.bash"
[ -x "$VMA" ] || fail "vma not built"

guest_prepare
first=256 blocks=512 stop=16
img=$T/a.raw
truncate -s 32M "$img"
python3 - "$img" <<'EOF' || fail "prefill $img"
import random, sys
with open(sys.argv[1], "r+b") as f:
    f.write(random.Random(77).randbytes(8 << 20))
EOF
cp --sparse=always "$img" "$T/a.orig"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$img" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
wait_socket "$T/qmp.sock"
wait_socket "$T/nbd.sock"

t0=$SECONDS
# seconds= is only a safety net: the stop marker ends the loop
guest_boot "$T/nbd.sock" drive-scsi0 loop first=$first blocks=$blocks seconds=900 stop=$stop
guest_wait_for "$GUEST_PID" '^GUEST-GEN 2$' || fail "guest did not complete two passes"
echo "guest looping after $((SECONDS - t0)) s"

export GUEST_LOG first blocks
py "$T" <<'EOF' || fail "backups of the looping guest"
import os, re, subprocess, sys, time
from qmp import QMP
from pitlib import start_backup

T = sys.argv[1]
VMA, SRCDIR = os.environ["VMA"], os.environ["SRCDIR"]
CONSOLE = os.environ["GUEST_LOG"]
FIRST, BLOCKS = int(os.environ["first"]), int(os.environ["blocks"])
B = 4096
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()

def last_gen():
    with open(CONSOLE, "rb") as f:
        gens = [int(g) for g in re.findall(rb"^GUEST-GEN (\d+)\r?$", f.read(), re.M)]
    return max(gens, default=0)

orig = open(T + "/a.orig", "rb").read()

def one(name, args):
    out = "%s/%s.vma" % (T, name)
    k = last_gen()                        # every block of the range holds >= k
    sent, uuid, returned = start_backup(q, dict(args, **{"backup-file": out}))
    # at the cut the guest was writing pass <= (last announced before returned) + 1
    m = last_gen() + 1
    gens_during = []
    while True:
        st = q.ok("query-backup")
        if st["status"] != "active":
            break
        gens_during.append(last_gen())
        time.sleep(0.1)
    done_gen = last_gen()
    assert st["status"] == "done", "%s: %r" % (name, st)
    assert st["uuid"] == uuid and st["transferred"] == st["total"] == len(orig), st
    d = "%s/x-%s" % (T, name)
    p = subprocess.run([VMA, "extract", out, d], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    disk = d + "/disk-drive-scsi0.raw"
    p = subprocess.run(["python3", SRCDIR + "/tests/functional/guest-check.py", "loop", disk,
                        "--first", str(FIRST), "--blocks", str(BLOCKS), "--orig",
                        T + "/a.orig", "--min-gen", str(k), "--max-gen", str(m)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("%s: the archived disk is no state the guest's disk had "
                         "(passes %d..%d possible): %s" % (name, k, m, p.stderr.strip()))
    data = open(disk, "rb").read()
    lo, hi = FIRST * B, (FIRST + BLOCKS) * B
    assert len(data) == len(orig), len(data)
    if data[:lo] != orig[:lo] or data[hi:] != orig[hi:]:
        raise SystemExit("%s: bytes outside the guest's range differ from the original" % name)
    print("%s: %s; archived %s (allowed %d..%d); guest passes during the backup: %d..%d"
          % (name, " ".join("%s=%s" % kv for kv in sorted(args.items())), p.stdout.strip(),
             k, m, k, done_gen))
    return done_gen - (m - 1)

# slow: the backup takes several passes of the guest
passes = one("slow", {"speed": 2 << 20, "max-workers": 1})
assert passes >= 1, "the guest completed no pass during a 5 s backup: its writes stalled"
one("fast", {"max-workers": 8})
q.close()
EOF

guest_stop_loop "$T/nbd.sock" drive-scsi0 $stop || fail "write the stop marker with qemu-io"
res=$(guest_wait "$GUEST_PID")
[ "$res" = "GUEST-RESULT: ok" ] || fail "guest: $res"
gens=$(guest_last_gen "$GUEST_PID")
end=$(tr -d '\r' <"$GUEST_LOG" | grep -a -o 'GUEST-LOOP-END .*')
[ "$end" = "GUEST-LOOP-END gens=$gens reason=stop" ] ||
    fail "expected the loop to end by the stop marker after GUEST-GEN $gens, got '$end'"
python3 "$GUEST_CHECK" loop "$img" --first $first --blocks $blocks --min-gen "$gens" \
    --max-gen "$gens" >/dev/null || fail "the disk does not hold the guest's last pass $gens"
echo "guest: $end after $((SECONDS - t0)) s"
quit_vmad
echo PASS
