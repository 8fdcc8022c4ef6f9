#!/usr/bin/env bash
# Live restore through vma-web, into the VM's own vmad: a full and an incremental backup
# of two disks (the guest writes between and after them), then a throttled live restore
# of the incremental. While it runs: the task's progress moves, the new exports
# drive-scsiN-restored already read exactly as the archive's disks (qemu-img compare
# against `vma extract --base`), the archive cannot be deleted and a second live restore
# or a backup is a 409. At the end: the new images equal the extracted disks bit for bit,
# the archive nodes are gone, the VM's own disks were never touched. Refused before
# anything is made: a compressed archive, a target that exists, an unknown mode; a vmad
# without an NBD server fails the task and leaves nothing behind (no node, no file).
. "$(dirname "$0")/web-lib.bash"
requires qemu-img qemu-io cmp
make_random "$T/d0.raw" 24
fallocate -p -o $((8 << 20)) -l $((4 << 20)) "$T/d0.raw" || fail "punch a hole"
make_random "$T/d1.raw" 8
mkdir "$T/state" "$T/state1"
web_vmad 100 --state-dir "$T/state" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on"
VMAD100=$VMAD_PID
truncate -s 4M "$T/e0.raw"
web_vmad 101 --state-dir "$T/state1" --blockdev "driver=file,node-name=drive-scsi0,filename=$T/e0.raw"
start_web

webpy "$T" <<'PYEOF' || fail "live restore"
import os, shutil, subprocess, sys, time
from webapi import Api
T = sys.argv[1]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
VMA = os.environ["VMA"]
NBD = "nbd+unix:///%s?socket=" + T + "/nbd.sock"

def qio(dev, cmd):
    subprocess.run(["qemu-io", "-f", "raw", "-c", cmd, NBD % dev], check=True,
                   stdout=subprocess.DEVNULL)

def backup(mode, comp="none"):
    t = api.post("/api/v1/vms/100/backup", {"mode": mode, "compress": comp})
    r = api.wait_task(t["task"])
    assert r["status"] == "ok", r
    return r["archive"]

full = backup("incremental")       # the first of a chain is full
qio("drive-scsi0", "write -P 0x5a 1M 3M")
qio("drive-scsi1", "write -P 0x33 0 64k")
inc = backup("incremental")
zst = backup("full", "zstd")
lst = {a["name"]: a for a in api.backups("100")}
assert lst[inc]["kind"] == "incremental" and lst[full]["kind"] == "full", lst
qio("drive-scsi0", "write -P 0x77 0 2M")   # the live disks move on after the backup
for n in ("d0", "d1"):
    shutil.copy("%s/%s.raw" % (T, n), "%s/%s.before" % (T, n))
d = T + "/backup/100/"
subprocess.run([VMA, "extract", "--base", d + full, d + inc, T + "/want"], check=True,
               stdout=subprocess.DEVNULL)
R = "/api/v1/vms/100/backups/%s/restore"

def refused(name, body, code, gist):
    st, b, _ = api.raw("POST", R % name, body)
    assert st == code and gist in b["error"], (st, b)

refused(zst, {"mode": "live", "target": T + "/x"}, 409, "needs an uncompressed archive")
refused(inc, {"mode": "live", "target": T + "/want"}, 409, "exists")
refused(inc, {"mode": "fast", "target": T + "/x"}, 400, "mode")
refused(inc, {"target": T + "/x", "speed": 5}, 400, "only for a live restore")
assert not os.path.exists(T + "/x")

t = api.post(R % inc, {"mode": "live", "target": T + "/live", "speed": 3 << 20})
assert t["type"] == "live-restore" and t["mode"] == "live", t
assert [x["export"] for x in t["disks"]] == ["drive-scsi0-restored", "drive-scsi1-restored"], t
seen = []
deadline = time.monotonic() + 20
while True:
    s = api.get("/api/v1/tasks/" + t["task"])
    assert s["status"] == "running", s
    if s["started"] and s["bytes"] > 0:
        seen.append(s["bytes"])
    if len(seen) >= 3 and len(set(seen)) >= 2:
        break
    assert time.monotonic() < deadline, s
    time.sleep(0.2)
assert s["progress"] < 1, s
st, b, _ = api.raw("DELETE", "/api/v1/vms/100/backups/" + inc)
assert st == 409 and "task" in b["error"], (st, b)
refused(full, {"mode": "live", "target": T + "/y"}, 409, "a live-restore of VM 100 is running")
st, b, _ = api.raw("POST", "/api/v1/vms/100/backup", {})
assert st == 409 and "live-restore" in b["error"], (st, b)
assert not os.path.exists(T + "/y")
# reads through the exports during the restore: the archive's data already
for i in (0, 1):
    p = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw",
                        NBD % ("drive-scsi%d-restored" % i), "%s/want/disk-drive-scsi%d.raw" % (T, i)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
r = api.wait_task(t["task"], timeout=60)
assert r["status"] == "ok" and r["progress"] == 1.0 and r["bytes"] == r["total"] == 32 << 20, r
vm = api.get("/api/v1/vms/100")
names = [x["name"] for x in vm["disks"]]
assert names == ["drive-scsi0", "drive-scsi1", "drive-scsi0-restored-target",
                 "drive-scsi0-restored", "drive-scsi1-restored-target",
                 "drive-scsi1-restored"], names
for i in (0, 1):
    got, want = "%s/live/disk-drive-scsi%d.raw" % (T, i), "%s/want/disk-drive-scsi%d.raw" % (T, i)
    assert subprocess.run(["cmp", got, want]).returncode == 0, got
    assert subprocess.run(["cmp", "%s/d%d.raw" % (T, i), "%s/d%d.before" % (T, i)]).returncode == 0
# the same names again: refused by the task, nothing made
t2 = api.post(R % inc, {"mode": "live", "target": T + "/again"})
r2 = api.wait_task(t2["task"])
assert r2["status"] == "error" and "already (an earlier live restore?)" in r2["error"], r2
assert not os.path.exists(T + "/again")

# VM 101: its vmad has no NBD server; the archive copied under its name
os.makedirs(T + "/backup/101")
n101 = full.replace("-100-", "-101-")
shutil.copy(d + full, T + "/backup/101/" + n101)
t3 = api.post("/api/v1/vms/101/backups/%s/restore" % n101, {"mode": "live", "target": T + "/l101"})
r3 = api.wait_task(t3["task"])
assert r3["status"] == "error" and "not started (nothing left behind)" in r3["error"] \
    and "NBD server" in r3["error"], r3
assert not os.path.exists(T + "/l101"), os.listdir(T + "/l101")
assert [x["name"] for x in api.get("/api/v1/vms/101")["disks"]] == ["drive-scsi0"]
print("live restore ok: %d progress samples" % len(seen))
PYEOF
stop_web
quit_vmad
echo PASS
