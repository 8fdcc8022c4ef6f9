#!/usr/bin/env bash
# Retention through vma-web's API with Proxmox's selection: keep-last, then keep-daily,
# keep-weekly, keep-monthly, each skipping periods an earlier option already kept from
# (so a month that keep-weekly kept from is not counted by keep-monthly again). A dry
# run removes nothing and says what would go and why; the saved policy applies when the
# request names none; no option keeps everything; the base of a kept incremental
# archive is kept; prune removes exactly what the dry run listed, with the sidecars;
# DELETE refuses a base, then removes an archive once (404 after).
. "$(dirname "$0")/web-lib.bash"

truncate -s 64K "$T/d0.raw"
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"
mkdir -p "$WEB_BACKUP/100"
# A..N, newest first (UTC: the tests run with TZ=UTC, and so does vma-web here)
stamps="A:2024_01_10-12_00_00 B:2024_01_10-10_00_00 C:2024_01_09-10_00_00
D:2024_01_08-10_00_00 E:2024_01_07-10_00_00 F:2024_01_06-10_00_00 G:2024_01_05-10_00_00
H:2024_01_04-10_00_00 I:2024_01_03-10_00_00 J:2024_01_02-10_00_00 K:2024_01_01-10_00_00
L:2023_12_20-10_00_00 M:2023_12_05-10_00_00 N:2023_11_15-10_00_00"
for s in $stamps; do
    "$VMA" create "$WEB_BACKUP/100/vzdump-qemu-100-${s#*:}.vma" drive-scsi0="$T/d0.raw" ||
        fail "vma create"
done
echo "$stamps" | tr ' ' '\n' >"$T/stamps"
start_web

webpy "$T" <<'EOF' || fail "prune"
import json, os, sys
from webapi import Api
T = sys.argv[1]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
letters = {}
for line in open(T + "/stamps").read().split():
    k, s = line.split(":")
    letters["vzdump-qemu-100-%s.vma" % s] = k
D = T + "/backup/100/"

lst = api.backups("100")
assert [letters[a["name"]] for a in lst] == list("ABCDEFGHIJKLMN"), lst
assert all(a["kind"] == "full" and a["uuid"] for a in lst), lst
uuid = {letters[a["name"]]: a["uuid"] for a in lst}
name = {letters[a["name"]]: a["name"] for a in lst}

# E is an incremental on top of J (its sidecar says so, as vma-web writes it for a
# delta archive): J must stay while E does
side = D + name["E"] + ".json"
s = json.load(open(side))
s.update(kind="incremental", base=uuid["J"])
json.dump(s, open(side, "w"))
e = [a for a in api.backups("100") if a["name"] == name["E"]][0]
assert e["kind"] == "incremental" and e["base"] == name["J"], e

def run(body):
    r = api.post("/api/v1/vms/100/prune", body)
    return {letters[a["name"]]: (a["action"], a["reason"]) for a in r["archives"]}, r

# nothing set: keep all
res, r = api.post("/api/v1/vms/100/prune", {"dry-run": True}), None
assert all(a["action"] == "keep" and a["reason"] == "keep-all" for a in res["archives"]), res

policy = {"keep-last": 2, "keep-daily": 3, "keep-weekly": 1, "keep-monthly": 2}
assert api.post("/api/v1/vms/100/retention", policy) == policy
assert api.get("/api/v1/vms/100/retention") == policy
res, r = run({"dry-run": True})          # the saved policy
assert r["dry-run"] is True and r["policy"] == policy, r
want = {"A": ("keep", "keep-last"), "B": ("keep", "keep-last"),
        "C": ("keep", "keep-daily"), "D": ("keep", "keep-daily"), "E": ("keep", "keep-daily"),
        "F": ("remove", None), "G": ("remove", None), "H": ("remove", None),
        "I": ("remove", None), "J": ("keep", "base"), "K": ("remove", None),
        "L": ("keep", "keep-weekly"), "M": ("remove", None), "N": ("keep", "keep-monthly")}
assert res == want, "dry run:\n%r\nwanted\n%r" % (res, want)
assert len(api.backups("100")) == 14, "the dry run removed something"

# a policy in the request overrides the saved one (and is not saved)
res2, _ = run({"dry-run": True, "keep-last": 1})
assert [k for k, v in sorted(res2.items()) if v[0] == "keep"] == ["A"], res2
assert api.get("/api/v1/vms/100/retention") == policy

# DELETE: a base is refused, others go once
st, body, _ = api.raw("DELETE", "/api/v1/vms/100/backups/" + name["J"])
assert st == 409 and name["E"] in body["error"], (st, body)
assert api.call("DELETE", "/api/v1/vms/100/backups/" + name["K"]) == {"deleted": name["K"]}
st, body, _ = api.raw("DELETE", "/api/v1/vms/100/backups/" + name["K"])
assert st == 404, (st, body)
assert not os.path.exists(D + name["K"]) and not os.path.exists(D + name["K"] + ".json")

res3, r = run({"dry-run": False})
gone = sorted(k for k, v in want.items() if v[0] == "remove" and k != "K")
assert all(a.get("removed") for a in r["archives"] if a["action"] == "remove"), r
left = sorted(letters[a["name"]] for a in api.backups("100"))
assert left == sorted(k for k, v in want.items() if v[0] == "keep"), left
for k in gone:
    assert not os.path.exists(D + name[k]) and not os.path.exists(D + name[k] + ".json"), k
print("kept", "".join(left), "removed", "".join(gone) + "K")
EOF
stop_web
quit_vmad
echo PASS
