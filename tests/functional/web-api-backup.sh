#!/usr/bin/env bash
# vma-web end to end over its API: while tests/tools/pit-writer keeps writing to two
# disks of a real vmad, "Backup now" (zstd, throttled so that it takes a few seconds)
# runs as a task whose progress is seen moving (bytes rising, a rate and an ETA); the
# archive is then listed with its size, kind and uuid, verifies as a task (and is listed
# verified), and a restore task brings back disks that pit-check.py proves to be the
# disks at one instant inside the backup; the live disks hold every acknowledged write.
. "$(dirname "$0")/web-lib.bash"
requires zstd
PIT_WRITER=$BUILDDIR/tests/tools/pit-writer
[ -x "$PIT_WRITER" ] || fail "$PIT_WRITER not built (make test-build)"
export PIT_WRITER

truncate -s $((16 * 1048576 + 4608)) "$T/d0.raw"
truncate -s $((1048576)) "$T/d1.raw"
make_random "$T/d2.raw" 16   # not written during the backup: the throttled copy shows
web_vmad 100 \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --blockdev "driver=file,node-name=drive-scsi2,filename=$T/d2.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on"
printf 'memory: 512\nname: web\n' >"$WEB_RUN/100/qemu-server.conf"
start_web
[ "$(stat -c %a "$WEB_BACKUP/vma-web.token")" = 600 ] || fail "token file not mode 0600"

webpy "$T" <<'EOF' || fail "backup, verify and restore through the API"
import os, sys, time
from webapi import Api
from pitlib import Writer, pit_check

T = sys.argv[1]
SRCDIR, TOOL = os.environ["SRCDIR"], os.environ["PIT_WRITER"]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
DISKS = ["drive-scsi0", "drive-scsi1"]

vms = api.get("/api/v1/vms")
assert [v["id"] for v in vms] == ["100"], vms
assert vms[0]["online"] is True, vms
assert [(d["name"], d["size"]) for d in vms[0]["disks"]] == \
    [("drive-scsi0", 16 * 1048576 + 4608), ("drive-scsi1", 1048576),
     ("drive-scsi2", 16 << 20)], vms
assert api.backups("100") == []

log = T + "/pit.log"
w = Writer(TOOL, log, ["nbd+unix:///%s?socket=%s/nbd.sock" % (n, T) for n in DISKS], seed=11,
           extra=["--rate", "400"])
seen = []
try:
    w.prefill()
    w.start()
    w.wait_acked(300)
    sent = time.monotonic_ns()
    t = api.post("/api/v1/vms/100/backup",
                 {"mode": "full", "compress": "zstd", "speed": 8 << 20, "notes": "first"})
    assert t["status"] == "running" and t["type"] == "backup", t
    returned = None

    def poll(st):
        global returned
        if st["started"] and returned is None:
            returned = time.monotonic_ns()
        seen.append(st)

    acked = w.stats()[0]
    st = api.wait_task(t["task"], on_poll=poll)
    w.wait_acked(w.stats()[0] + 200)
    res = w.stop()
finally:
    w.kill()
assert st["status"] == "ok" and st["error"] is None and st["progress"] == 1.0, st
assert returned is not None, "the task never said the backup started"
# progress moving: several distinct values strictly between 0 and the total, rising
mid = [s["bytes"] for s in seen if s["status"] == "running" and 0 < s["bytes"] < s["total"]]
assert len(set(mid)) >= 3, "progress did not move: %r" % mid
assert mid == sorted(mid), mid
assert any(s["rate"] > 0 and s["eta"] is not None for s in seen), "no rate/ETA seen"
assert st["total"] == 32 * 1048576 + 4608 + 1048576, st
name = st["archive"]
assert name.startswith("vzdump-qemu-100-") and name.endswith(".vma.zst"), name

lst = api.backups("100")
assert len(lst) == 1, lst
a = lst[0]
assert a["name"] == name and a["kind"] == "full" and a["base"] is None, a
assert a["size"] == os.path.getsize(T + "/backup/100/" + name) and a["size"] > 0, a
assert a["uuid"] == st["uuid"] and a["notes"] == "first" and a["verified"] is False, a
assert a["compress"] == "zstd", a
assert oct(os.stat(T + "/backup/100/" + name).st_mode & 0o777) == "0o600", "archive mode"
assert [f for f in os.listdir(T + "/backup/100") if f.startswith(".")] == [], "temp left"

v = api.post("/api/v1/vms/100/backups/%s/verify" % name)
vs = api.wait_task(v["task"])
assert vs["status"] == "ok" and vs["progress"] == 1.0, vs
a = api.backups("100")[0]
assert a["verified"] is True and a["verify-state"] == "ok" and a["verify-time"], a

target = T + "/restored"
r = api.post("/api/v1/vms/100/backups/%s/restore" % name, {"target": target})
rs = api.wait_task(r["task"])
assert rs["status"] == "ok", rs
images = ["--image=%d=%s/disk-%s.raw" % (i, target, n) for i, n in enumerate(DISKS)]
rc, msg = pit_check(SRCDIR, "pit", log, *images, "--sent", sent, "--returned", returned)
assert rc == 0, "restored disks are not a point-in-time copy: " + msg
with open(T + "/d2.raw", "rb") as f1, open(target + "/disk-drive-scsi2.raw", "rb") as f2:
    assert f1.read() == f2.read(), "drive-scsi2 restored differs"
fields = dict(kv.split("=") for kv in msg.split()[2:])
assert int(fields["rewritten"]) > 0, "nothing was rewritten during the backup: " + msg
rc, msg2 = pit_check(SRCDIR, "final", log, "--image=0=%s/d0.raw" % T, "--image=1=%s/d1.raw" % T)
assert rc == 0, msg2
# a restore never overwrites: the same target again is a conflict
status, body, _ = api.raw("POST", "/api/v1/vms/100/backups/%s/restore" % name, {"target": target})
assert status == 409 and "exists" in body["error"], (status, body)
print("backup %s: %d progress samples, %d writes during it, %s" % (name, len(mid), res["ops"], msg))
EOF
stop_web
quit_vmad
echo PASS
