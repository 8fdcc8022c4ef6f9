#!/usr/bin/env bash
# A vmad that accepts the connection but never answers (tests/functional/muteqmp.py:
# VM 101 greets and then answers no command, VM 102 says nothing at all) beside a real
# vmad (VM 100), vma-web with --qmp-timeout 1: asking for VM 101 or 102 is a 504 with
# the reason in about a second, not a request that hangs; the list of VMs still comes,
# with them "online": false; while several such requests wait, other requests are
# answered at once; a backup of VM 101 ends as a task error; VM 100 works throughout
# and vma-web stops cleanly.
. "$(dirname "$0")/web-lib.bash"
make_random "$T/d0.raw" 1
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"
for id in 101 102; do
    mkdir -p "$WEB_RUN/$id"
done
python3 "$SRCDIR/tests/functional/muteqmp.py" "$WEB_RUN/101/qmp.sock" greet &
cleanup_pid $!
python3 "$SRCDIR/tests/functional/muteqmp.py" "$WEB_RUN/102/qmp.sock" silent &
cleanup_pid $!
for i in $(seq 1 100); do
    [ -S "$WEB_RUN/101/qmp.sock" ] && [ -S "$WEB_RUN/102/qmp.sock" ] && break
    sleep 0.05
done
start_web --qmp-timeout 1

webpy "$T" <<'PYEOF' || fail "QMP timeouts"
import os, sys, threading, time
from webapi import Api
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])

for vm, gist in (("101", "query-block: vmad did not answer within 1 s"),
                 ("102", "vmad did not greet within 1 s")):
    t0 = time.monotonic()
    st, body, _ = api.raw("GET", "/api/v1/vms/" + vm)
    took = time.monotonic() - t0
    assert st == 504 and gist in body["error"], (vm, st, body)
    assert body["error"].startswith("VM %s: " % vm), body
    assert 0.9 < took < 5, (vm, took)

# the list: the hung VMs are offline with the reason, the real one online
vms = {v["id"]: v for v in api.get("/api/v1/vms")}
assert sorted(vms) == ["100", "101", "102"], vms
assert vms["100"]["online"] is True and vms["100"]["disks"][0]["name"] == "drive-scsi0", vms
for vm in ("101", "102"):
    assert vms[vm]["online"] is False and "within 1 s" in vms[vm]["error"], vms[vm]

# several hung requests at once; meanwhile the daemon answers others at once
res = []
def hang(vm):
    res.append(api.raw("GET", "/api/v1/vms/" + vm)[0])
th = [threading.Thread(target=hang, args=(vm,)) for vm in ("101", "102") * 3]
for t in th:
    t.start()
time.sleep(0.2)
t0 = time.monotonic()
assert api.get("/api/v1/vms/100/backups") == []
assert api.get("/api/v1/tasks") == []
assert time.monotonic() - t0 < 0.5, time.monotonic() - t0
for t in th:
    t.join(30)
assert res == [504] * 6, res

# a backup of the hung VM: the task ends with the reason
t = api.post("/api/v1/vms/101/backup", {"mode": "full"})
r = api.wait_task(t["task"], timeout=15)
assert r["status"] == "error" and "did not answer within 1 s" in r["error"], r
# the real VM still works
t = api.post("/api/v1/vms/100/backup", {"mode": "full"})
r = api.wait_task(t["task"])
assert r["status"] == "ok", r
assert len(api.backups("100")) == 1
print("504 for both hung peers; list, other requests and VM 100 unaffected")
PYEOF
stop_web
quit_vmad
echo PASS
