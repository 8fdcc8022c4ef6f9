#!/usr/bin/env bash
# vma-web refuses what it must, with a JSON 4xx and a message, and stays up: no token, a
# wrong or truncated token, another scheme (401 on every API path, known or not); archive
# names that try to leave the backup directory or are not vzdump names (400); unknown
# VMs, archives, tasks, paths (404); wrong methods, state changes by GET (405);
# malformed JSON, non-objects, unknown members, wrong types (400); an oversized body
# (413); a relative or existing restore target (400/409). At start: the token file is
# created mode 0600, a world-readable one and a non-loopback address are refused.
. "$(dirname "$0")/web-lib.bash"

truncate -s 1M "$T/d0.raw"
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"

# start-up refusals
printf 'aaaaaaaaaaaaaaaaaaaaaaaa\n' >"$T/open.token"
chmod 644 "$T/open.token"
if "$VMA_WEB" --listen 127.0.0.1:0 --run-dir "$WEB_RUN" --backup-dir "$WEB_BACKUP" \
        --token-file "$T/open.token" >"$T/o1" 2>&1; then
    fail "a world-readable token file was accepted"
fi
grep -q "readable by others" "$T/o1" || fail "token mode message: $(cat "$T/o1")"
if "$VMA_WEB" --listen 0.0.0.0:0 --run-dir "$WEB_RUN" --backup-dir "$WEB_BACKUP" \
        --token-file "$T/t2" >"$T/o2" 2>&1; then
    fail "a non-loopback address was accepted without --allow-remote"
fi
grep -q "not a loopback address" "$T/o2" || fail "remote message: $(cat "$T/o2")"
if "$VMA_WEB" --run-dir "$WEB_RUN" >"$T/o3" 2>&1; then fail "missing options accepted"; fi

start_web --token-file="$T/web.token"
[ "$(stat -c %a "$T/web.token")" = 600 ] || fail "token file not mode 0600"
# a backup to name
"$VMA" create "$WEB_BACKUP/100/vzdump-qemu-100-2024_01_02-03_04_05.vma" \
    drive-scsi0="$T/d0.raw" 2>/dev/null ||
    { mkdir -p "$WEB_BACKUP/100" && "$VMA" create "$WEB_BACKUP/100/vzdump-qemu-100-2024_01_02-03_04_05.vma" \
        drive-scsi0="$T/d0.raw"; } || fail "vma create"
echo secret >"$T/outside.vma"

webpy "$T" <<'EOF' || fail "refusals"
import os, sys
from webapi import Api
T = sys.argv[1]
api = Api(os.environ["WEB_URL"], os.environ["WEB_TOKEN"])
tok = os.environ["WEB_TOKEN"]
good = "vzdump-qemu-100-2024_01_02-03_04_05.vma"

def expect(status, method, path, body=None, token=None, data=None, headers=None, gist=None):
    st, js, hdrs = api.raw(method, path, body, token=token, data=data, headers=headers)
    assert st == status, "%s %s: %d, expected %d: %r" % (method, path, st, status, js)
    if js is None and st == 400 and "%" in path:
        return js, hdrs   # libsoup refuses some escapes (%00, %2F..) itself, with an empty 400
    assert isinstance(js, dict) and isinstance(js.get("error"), str) and js["error"], \
        "%s %s: no JSON error: %r" % (method, path, js)
    assert hdrs.get("Content-Type") == "application/json", hdrs
    if gist:
        assert gist in js["error"], "%s %s: %r lacks %r" % (method, path, js["error"], gist)
    return js, hdrs

# 401: whatever the path, before anything else
for path in ["/api/v1/vms", "/api/v1/vms/100/backups", "/api/v1/tasks", "/api/v1/nope",
             "/api/v1/vms/100/backups/%s" % good, "/api/"]:
    _, h = expect(401, "GET", path, token=False)
    assert h.get("WWW-Authenticate", "").startswith("Bearer"), h
    expect(401, "GET", path, token="x" + tok)
    expect(401, "GET", path, token=tok[:-1])
    expect(401, "GET", path, token=tok + "x")
    expect(401, "GET", path, token="")
    expect(401, "GET", path, token=False, headers={"Authorization": "Basic " + tok})
expect(401, "DELETE", "/api/v1/vms/100/backups/" + good, token="wrong-token-0123456789")
expect(401, "POST", "/api/v1/vms/100/backup", {"mode": "full"}, token=False)
assert os.path.exists(T + "/backup/100/" + good), "deleted without the token"

# 400: names that are not vzdump names of this VM, traversal in every spelling
# (".." and "%2E%2E" segments are resolved by the HTTP layer, RFC 3986: never seen here)
bad_names = ["...", "..%2F..%2Foutside.vma", "%2e%2e%2f%2e%2e%2fd0.raw",
             "vzdump-qemu-100-2024_01_02-03_04_05.vma%00", "vzdump-qemu-101-2024_01_02-03_04_05.vma",
             "vzdump-qemu-100-2024_01_02-03_04_05.vma.gz", "vzdump-qemu-100-2024_13_02-03_04_05.vma",
             "vzdump-qemu-100-2024_02_30-03_04_05.vma", ".vzdump-qemu-100-2024_01_02-03_04_05.vma.tmp",
             "vzdump-qemu-100-2024_01_02-03_04_05.vma.json", "%2Fetc%2Fpasswd", "a%5Cb", "%25"]
for n in bad_names:
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/verify"), ("POST", "/notes")]:
        expect(400, method, "/api/v1/vms/100/backups/%s%s" % (n, suffix),
               {} if method == "POST" else None)
expect(400, "POST", "/api/v1/vms/100/backups/%s/restore" % "..%2F..", {"target": T + "/r"})
for vm in ["0100", "1234567890", "x", "-1", "..%2F..", "%31%30%30a"]:
    expect(400, "GET", "/api/v1/vms/%s/backups" % vm)
assert os.path.exists(T + "/outside.vma") and os.path.exists(T + "/d0.raw")

# 404
expect(404, "GET", "/api/v1/vms/999/backups", gist="no VM 999")
expect(404, "GET", "/api/v1/vms/100/backups/vzdump-qemu-100-2024_01_02-03_04_06.vma")
expect(404, "DELETE", "/api/v1/vms/100/backups/vzdump-qemu-100-2024_01_02-03_04_06.vma")
expect(404, "POST", "/api/v1/vms/100/backups/vzdump-qemu-100-2024_01_02-03_04_06.vma/verify", {})
expect(404, "GET", "/api/v1/tasks/backup-77")
expect(404, "POST", "/api/v1/tasks/backup-77/cancel", {})
expect(404, "GET", "/api/v1/nothing")
expect(404, "GET", "/api/v2/vms")
expect(404, "POST", "/api/v1/vms/100/backups/%s/frobnicate" % good, {})

# 405: state changes only by POST/DELETE
expect(405, "GET", "/api/v1/vms/100/backup")
expect(405, "GET", "/api/v1/vms/100/prune")
expect(405, "GET", "/api/v1/vms/100/backups/%s/verify" % good)
expect(405, "PUT", "/api/v1/vms/100/backups/%s" % good, {})
expect(405, "DELETE", "/api/v1/vms")
expect(405, "POST", "/api/v1/tasks", {})

# 400: bodies
for data in [b"{", b"{\"mode\": }", b"[1,2]", b"\"full\"", b"null", b"\xff\xfe", b"{\"a\":1}\x00",
             b"{\"mode\":\"full\"}{}", b"{\"mode\":\"full\",\"mode\":\"incremental\"}"]:
    expect(400, "POST", "/api/v1/vms/100/backup", data=data,
           headers={"Content-Type": "application/json"})
expect(400, "POST", "/api/v1/vms/100/backup", {"mode": "fast"}, gist="mode")
expect(400, "POST", "/api/v1/vms/100/backup", {"compress": "gzip"}, gist="compress")
expect(400, "POST", "/api/v1/vms/100/backup", {"mode": 1})
expect(400, "POST", "/api/v1/vms/100/backup", {"speed": -1}, gist="speed")
expect(400, "POST", "/api/v1/vms/100/backup", {"speed": "fast"}, gist="speed")
expect(400, "POST", "/api/v1/vms/100/backup", {"mode": "full", "devlist": "x"}, gist="devlist")
expect(400, "POST", "/api/v1/vms/100/retention", {"keep-forever": 1}, gist="keep-forever")
expect(400, "POST", "/api/v1/vms/100/retention", {"keep-last": -1}, gist="keep-last")
expect(400, "POST", "/api/v1/vms/100/retention", {"keep-last": "3"}, gist="keep-last")
expect(400, "POST", "/api/v1/vms/100/prune", {"dry-run": "yes"}, gist="dry-run")
expect(400, "POST", "/api/v1/vms/100/backups/%s/restore" % good, {}, gist="target")
expect(400, "POST", "/api/v1/vms/100/backups/%s/restore" % good, {"target": "rel/dir"},
       gist="absolute")
expect(409, "POST", "/api/v1/vms/100/backups/%s/restore" % good, {"target": T}, gist="exists")
expect(400, "POST", "/api/v1/vms/100/backups/%s/notes" % good, {"notes": 5})
expect(413, "POST", "/api/v1/vms/100/backup", data=b" " * (1024 * 1024 + 1))

# still serving, and a good request works
assert [v["id"] for v in api.get("/api/v1/vms")] == ["100"]
assert [a["name"] for a in api.backups("100")] == [good]
api.post("/api/v1/vms/100/backups/%s/notes" % good, {"notes": "kept"})
assert api.backups("100")[0]["notes"] == "kept"
# the page is served without the token, the API never
st, body, h = api.raw("GET", "/", token=False)
assert st == 200 and b"vma-web" in body and "text/html" in h["Content-Type"], (st, h)
assert "default-src 'self'" in h["Content-Security-Policy"], h
print("all refusals answered")
EOF
kill -0 "$WEB_PID" || fail "vma-web died"
stop_web
quit_vmad
echo PASS
