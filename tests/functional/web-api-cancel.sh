#!/usr/bin/env bash
# Cancel through vma-web: a throttled backup (zstd, so through vma-web's own temporary
# file) and a plain one are cancelled while running; each task ends in error with vmad's
# "backup canceled", nothing is listed, no temporary file is left; a second backup of the
# same VM while one runs is a 409; cancelling an ended task is a 409; the next backup
# works.
. "$(dirname "$0")/web-lib.bash"
requires zstd
make_random "$T/d0.raw" 16
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"
start_web
webpy "$T" <<'EOF' || fail "cancel"
import os, sys, time
from webapi import Api
T = sys.argv[1]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
for comp in ["zstd", "none"]:
    t = api.post("/api/v1/vms/100/backup", {"compress": comp, "speed": 1 << 20})
    st, body, _ = api.raw("POST", "/api/v1/vms/100/backup", {"compress": comp})
    assert st == 409 and "running" in body["error"], (st, body)
    deadline = time.monotonic() + 30
    while not api.get("/api/v1/tasks/" + t["task"])["bytes"]:
        assert time.monotonic() < deadline, "backup never moved"
        time.sleep(0.05)
    c = api.post("/api/v1/tasks/%s/cancel" % t["task"])
    assert c["cancel-requested"] is True, c
    r = api.wait_task(t["task"])
    assert r["status"] == "error" and "backup canceled" in r["error"], r
    assert api.backups("100") == [], api.backups("100")
    left = os.listdir(T + "/backup/100")
    assert left == [], left
    st, body, _ = api.raw("POST", "/api/v1/tasks/%s/cancel" % t["task"], {})
    assert st == 409 and "ended" in body["error"], (st, body)
t = api.post("/api/v1/vms/100/backup", {"compress": "zstd"})
assert api.wait_task(t["task"])["status"] == "ok"
assert len(api.backups("100")) == 1
print("cancelled twice, then one archive")
EOF
stop_web
quit_vmad
echo PASS
