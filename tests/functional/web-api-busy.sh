#!/usr/bin/env bash
# One backup of a VM at a time, prune included: two "Backup now" sent at the same
# instant give one task and one 409 (three rounds); a prune while a backup runs is a 409
# naming the task (a dry run is answered); and a backup with "prune": true holds the VM
# until its retention run has ended too: a backup requested in a tight loop meanwhile
# is refused with 409 every time until the first task has ended (its prune removes 150
# old archives, so the retention run takes a while).
. "$(dirname "$0")/web-lib.bash"
make_random "$T/d0.raw" 4
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"
start_web

webpy "$T" <<'PYEOF' || fail "one backup at a time"
import os, shutil, sys, threading, time
from webapi import Api
T = sys.argv[1]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
B = "/api/v1/vms/100/backup"

for rnd in range(3):
    out, go = [], threading.Barrier(2)
    def send():
        go.wait()
        out.append(api.raw("POST", B, {"speed": 1 << 20}))
    th = [threading.Thread(target=send) for _ in range(2)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    codes = sorted(o[0] for o in out)
    assert codes == [202, 409], out
    task = [o[1] for o in out if o[0] == 202][0]["task"]
    err = [o[1] for o in out if o[0] == 409][0]["error"]
    assert err == "a backup of VM 100 is running (task %s)" % task, err
    if rnd == 0:
        st, body, _ = api.raw("POST", "/api/v1/vms/100/prune", {"keep-last": 1})
        assert st == 409 and body["error"] == \
            "a backup of VM 100 is running (task %s); prune when it has ended" % task, (st, body)
        dry = api.post("/api/v1/vms/100/prune", {"keep-last": 1, "dry-run": True})
        assert dry["dry-run"] is True, dry
    api.post("/api/v1/tasks/%s/cancel" % task)
    assert api.wait_task(task)["status"] == "error"

# 150 old archives (copies of one real one, under older names)
t = api.post(B, {})
assert api.wait_task(t["task"])["status"] == "ok"
first = api.backups("100")[0]["name"]
d = T + "/backup/100"
for i in range(150):
    shutil.copy(os.path.join(d, first),
                os.path.join(d, "vzdump-qemu-100-2020_01_01-00_%02d_%02d.vma" % (i // 60, i % 60)))
api.post("/api/v1/vms/100/retention", {"keep-last": 1})
t = api.post(B, {"prune": True})
refused = 0
while True:
    code, body, _ = api.raw("POST", B, {})
    # read after the request: a task running now was running when it was answered
    running = api.get("/api/v1/tasks/" + t["task"])["status"] == "running"
    if code == 202:
        assert not running, "a second backup started while the first (or its prune) ran"
        api.wait_task(body["task"])
        break
    assert code == 409, (code, body)
    refused += 1
    if not running:
        break
r = api.get("/api/v1/tasks/" + t["task"])
assert r["status"] == "ok" and len(r["pruned"]) >= 151, r
removed = [p for p in r["pruned"] if p["action"] == "remove"]
assert len(removed) == 151, len(removed)
print("%d refused while the first backup and its prune ran" % refused)
PYEOF
stop_web
quit_vmad
echo PASS
