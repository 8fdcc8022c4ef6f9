#!/usr/bin/env bash
# An incremental backup through vma-web. With a vmad that has change bitmaps
# (block-dirty-bitmap-add): the first incremental starts the chain (a full archive), data
# written afterwards makes the second an incremental archive whose base is the first; it
# lists with kind and base, verifies (vma verify --base ...) and restores (vma extract
# --base ...) to the disk's content; deleting its base is refused. With a vmad without
# them, the task fails with a message saying so (what the page shows) and nothing is
# written.
. "$(dirname "$0")/web-lib.bash"
make_random "$T/d0.raw" 4
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
start_web
webpy "$T" <<'EOF' || fail "incremental"
import os, subprocess, sys
from webapi import Api
from qmp import QMP
T = sys.argv[1]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
q = QMP(T + "/run/100/qmp.sock")
q.negotiate()
names = {c["name"] for c in q.ok("query-commands")}
q.close()

t = api.post("/api/v1/vms/100/backup", {"mode": "incremental"})
r = api.wait_task(t["task"])
if "block-dirty-bitmap-add" not in names:
    assert r["status"] == "error" and "change bitmaps" in r["error"], r
    assert api.backups("100") == [], api.backups("100")
    print("vmad has no change bitmaps; the task says: " + r["error"])
    sys.exit(0)
assert r["status"] == "ok", r
first = r["archive"]
# change 64 KiB in the middle through NBD
subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k",
                "nbd+unix:///drive-scsi0?socket=%s/nbd.sock" % T], check=True,
               capture_output=True)
t = api.post("/api/v1/vms/100/backup", {"mode": "incremental"})
r = api.wait_task(t["task"])
assert r["status"] == "ok", r
second = r["archive"]
lst = {a["name"]: a for a in api.backups("100")}
assert lst[second]["kind"] == "incremental" and lst[second]["base"] == first, lst
v = api.wait_task(api.post("/api/v1/vms/100/backups/%s/verify" % second)["task"])
assert v["status"] == "ok", v
x = api.wait_task(api.post("/api/v1/vms/100/backups/%s/restore" % second,
                           {"target": T + "/r"})["task"])
assert x["status"] == "ok", x
assert open(T + "/r/disk-drive-scsi0.raw", "rb").read() == open(T + "/d0.raw", "rb").read()
st, body, _ = api.raw("DELETE", "/api/v1/vms/100/backups/" + first)
assert st == 409, (st, body)
print("chain %s <- %s verified and restored" % (first, second))
EOF
stop_web
quit_vmad
echo PASS
