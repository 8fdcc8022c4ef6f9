#!/usr/bin/env bash
# `vma backup`'s QMP client against a scripted fake server (python): what it sends
# (arguments, ids, the descriptor for '-' as SCM_RIGHTS), framing it must accept
# (a pretty-printed greeting, events before a reply, a reply split over several writes,
# two messages in one write), the exact progress and summary text for known numbers, and
# what it must refuse with one error line instead of hanging or crashing: not a QMP
# server, a closed connection, a reply with another id, deep nesting, invalid JSON, a NUL
# byte, a malformed event, wrongly typed status members, another backup's uuid, and a
# failed backup's errmsg.
. "$(dirname "$0")/qmp-lib.bash"
requires timeout

VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built (make)"

SRV_PID=

cat >"$T/fake.py" <<'EOF'
import json, os, socket, sys, time

path, scenario, log = sys.argv[1:4]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
# the socket appears under its name only once it listens (a client that sees the file
# must not be refused), and the server gives up if no client comes
srv.bind(path + ".new")
srv.listen(1)
os.rename(path + ".new", path)
srv.settimeout(30)
conn, _ = srv.accept()
conn.settimeout(None)
buf = b""
fds = []

def send(b):
    conn.sendall(b)

def msg(obj):
    send(json.dumps(obj).encode() + b"\r\n")

def recv_cmd():
    global buf
    while b"\n" not in buf:
        data, got, _, _ = socket.recv_fds(conn, 65536, 4)
        fds.extend(got)
        if not data:
            return None
        buf += data
    line, buf = buf.split(b"\n", 1)
    cmd = json.loads(line)
    with open(log, "a") as f:
        f.write(json.dumps(cmd) + "\n")
    return cmd

def event(name, data):
    msg({"event": name, "data": data,
         "timestamp": {"seconds": 1, "microseconds": 2}})

if scenario == "garbage":
    send(b"NBDMAGIC\x00\x00IHAVEOPT")
    conn.recv(1)
    sys.exit(0)
if scenario == "ok":
    send(b'{\n  "QMP": {\n    "version": {"qemu": {"micro": 0, "minor": 2, "major": 7}},\n'
         b'    "capabilities": ["oob"]\n  }\n}\r\n')
else:
    msg({"QMP": {"version": {}, "capabilities": []}})

cmd = recv_cmd()
assert cmd["execute"] == "qmp_capabilities", cmd
if scenario == "close":
    conn.close()
    sys.exit(0)
msg({"return": {}, "id": cmd["id"]})

queries = 0
while True:
    cmd = recv_cmd()
    if cmd is None:
        break
    name, cid = cmd["execute"], cmd["id"]
    if name == "getfd":
        assert len(fds) == 1, fds
        os.write(fds[0], b"archive bytes from the server\n")
        os.close(fds.pop())
        msg({"return": {}, "id": cid})
    elif name == "backup":
        if scenario == "wrong-id":
            msg({"return": {"UUID": "u-1"}, "id": cid + 100})
        elif scenario == "noid-error":
            msg({"error": {"class": "GenericError", "desc": "cannot parse that"}})
        elif scenario == "deep":
            send(b'{"return": ' + b"[" * 2000 + b"]" * 2000 + b"}\r\n")
        elif scenario == "badjson":
            send(b'{"return": nope, "id": %d}\r\n' % cid)
        elif scenario == "nul":
            send(b'{"return": {"UUID": "u\x00"}, "id": %d}\r\n' % cid)
        elif scenario == "badevent":
            msg({"event": 5, "timestamp": {"seconds": 1, "microseconds": 2}})
        else:
            target = cmd["arguments"]["backup-file"]
            if target.startswith("/") and not target.startswith("/dev/") \
                    and not target.endswith("/missing.vma"):
                open(target, "w").close()
            # an event first, then the reply in two writes, then two events at once
            event("JOB_STATUS_CHANGE", {"id": "drive-a", "status": "created"})
            text = json.dumps({"return": {"UUID": "u-1"}, "id": cid}).encode() + b"\r\n"
            send(text[:7])
            time.sleep(0.05)
            send(text[7:])
            send(b'{"event": "JOB_STATUS_CHANGE", "data": {"id": "drive-a", "status": '
                 b'"running"}, "timestamp": {"seconds": 1, "microseconds": 2}}\r\n'
                 b'{"event": "X", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n')
    elif name == "query-backup":
        queries += 1
        st = {"status": "active", "total": 100 << 20, "dirty": 100 << 20,
              "transferred": 10 << 20, "zero-bytes": 5 << 20, "reused": 0,
              "start-time": 1, "backup-file": "x", "uuid": "u-1", "finishing": False}
        if scenario == "big":
            st.update(status="done", total=1649267441664, transferred=1649267441664,
                      **{"zero-bytes": 1023})
        elif scenario == "error-status":
            st.update(status="error", errmsg="write to x: No space left on device")
        elif scenario == "badtype":
            st["total"] = "x"
        elif scenario == "other-uuid":
            st["uuid"] = "u-2"
        elif queries >= 2:
            st.update(status="done", transferred=100 << 20, **{"zero-bytes": 50 << 20})
        msg({"return": st, "id": cid})
    elif name == "backup-cancel":
        msg({"return": {}, "id": cid})
    else:
        msg({"error": {"class": "CommandNotFound", "desc": "no " + name}, "id": cid})
EOF

# fake SCENARIO: start the fake server on $T/fake.sock
fake() {
    rm -f "$T/fake.sock" "$T/requests"
    python3 "$T/fake.py" "$T/fake.sock" "$1" "$T/requests" 2>>"$T/fake.err" &
    SRV_PID=$!
    cleanup_pid "$SRV_PID"
    local i
    for i in $(seq 1 100); do
        [ -S "$T/fake.sock" ] && return 0
        sleep 0.05
    done
    fail "the fake server did not start: $(cat "$T/fake.err")"
}
# run SCENARIO ARGS...: vma backup against the fake server; rc, $T/out, $T/err
run() {
    fake "$1"
    shift
    timeout 20 "$VMA" backup --qmp "$T/fake.sock" --interval 0.05 "$@" >"$T/out" 2>"$T/err"
    rc=$?
    wait "$SRV_PID"
    forget_pid "$SRV_PID"
    SRV_PID=
}
expect_backup_fail() {
    local scenario=$1 want=$2
    run "$scenario" "$T/x.vma"
    [ "$rc" = 1 ] || fail "$scenario: exit $rc; $(cat "$T/err")"
    [ "$(tail -n 1 "$T/err")" = "$want" ] ||
        fail "$scenario: stderr '$(cat "$T/err")', expected last line '$want'"
}

# ---- help ------------------------------------------------------------------------------
"$VMA" backup --help >"$T/out" || fail "backup --help"
head -n 1 "$T/out" | grep -qx "Usage: vma backup --qmp SOCKET \[OPTIONS\] OUTPUT" ||
    fail "backup --help: $(cat "$T/out")"
"$VMA" --help | grep -q '^  backup  ' || fail "vma --help does not list backup"

# ---- a good conversation: requests, framing, text ----------------------------------
mkdir "$T/cwd"
cd "$T/cwd" || fail "cd"
run ok -d a,b -c ../vm.conf --firewall /abs/fw --speed 2M --max-workers 4 --fleecing rel.vma
cd / || fail "cd"
[ "$rc" = 0 ] || fail "ok: exit $rc; $(cat "$T/err")"
python3 - "$T/requests" "$T" <<'EOF' || fail "requests: $(cat "$T/requests")"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
T = sys.argv[2]
names = [r["execute"] for r in reqs]
assert names[:2] == ["qmp_capabilities", "backup"], names
assert set(names[2:]) == {"query-backup"} and len(names) >= 4, names
ids = [r["id"] for r in reqs]
assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids), ids
assert reqs[1]["arguments"] == {
    "backup-file": T + "/cwd/rel.vma", "devlist": "a,b", "config-file": T + "/cwd/../vm.conf",
    "firewall-file": "/abs/fw", "speed": 2 << 20, "max-workers": 4, "fleecing": True,
}, reqs[1]
EOF
# the known numbers: 100 MiB, half of it zero
grep -qx "INFO: started backup task 'u-1'" "$T/err" || fail "start line: $(cat "$T/err")"
grep -qE '^INFO: 100% \(100\.0 MiB of 100\.0 MiB\) in 0s, read: [0-9.]+ (MiB|GiB)/s, write: [0-9.]+ (MiB|GiB)/s$' \
    "$T/err" || fail "last line: $(cat "$T/err")"
grep -qx "INFO: backup is sparse: 50.00 MiB (50%) total zero data" "$T/err" ||
    fail "sparse line: $(cat "$T/err")"
grep -qx "INFO: transferred 100.00 MiB in <1 seconds" "$T/err" ||
    fail "transferred line: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 4 ] || fail "ok: other output: $(cat "$T/err")"

run big --speed 1TiB "$T/x.vma"
[ "$rc" = 0 ] || fail "big: exit $rc; $(cat "$T/err")"
grep -q "^INFO: 100% (1.5 TiB of 1.5 TiB) in 0s, read: " "$T/err" || fail "big: $(cat "$T/err")"
grep -qx "INFO: backup is sparse: 1023.00 B (0%) total zero data" "$T/err" || fail "big: $(cat "$T/err")"
grep -qx "INFO: transferred 1.50 TiB in <1 seconds" "$T/err" || fail "big: $(cat "$T/err")"
grep -q '"speed": 1099511627776' "$T/requests" || fail "big: --speed 1TiB: $(cat "$T/requests")"

# a file that vmad wrote but this side does not see (vmad with a private /tmp)
run ok -q "$T/missing.vma"
[ "$rc" = 0 ] || fail "missing: exit $rc; $(cat "$T/err")"
[ "$(cat "$T/err")" = "vma: backup: warning: $T/missing.vma does not exist here although vmad wrote it (does vmad see another file system?)" ] ||
    fail "missing: $(cat "$T/err")"

# '-': our stdout goes to the server with getfd, which writes into it
run ok -q -
[ "$rc" = 0 ] || fail "stdout: exit $rc; $(cat "$T/err")"
[ "$(cat "$T/out")" = "archive bytes from the server" ] || fail "stdout: '$(cat "$T/out")'"
[ ! -s "$T/err" ] || fail "-q: $(cat "$T/err")"
python3 -c '
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert reqs[1] == {"execute": "getfd", "arguments": {"fdname": "vma-backup"}, "id": reqs[1]["id"]}, reqs[1]
assert reqs[2]["arguments"] == {"backup-file": "/dev/fdname/vma-backup"}, reqs[2]
' "$T/requests" || fail "getfd requests: $(cat "$T/requests")"

# ---- what must fail with one line ------------------------------------------------------
P=$T/fake.sock
expect_backup_fail garbage "vma: backup: $P: not a QMP monitor (unexpected byte 0x4e outside a message)"
expect_backup_fail close "vma: backup: $P: qmp_capabilities: $P: connection closed by the server"
expect_backup_fail wrong-id "vma: backup: $P: QMP protocol error: a reply with another id than backup's"
expect_backup_fail noid-error "vma: backup: cannot parse that"
expect_backup_fail deep "vma: backup: $P: QMP protocol error: message nested deeper than 1024"
expect_backup_fail nul "vma: backup: $P: QMP protocol error: NUL byte in a message"
expect_backup_fail badevent "vma: backup: $P: QMP protocol error: an event name is not a string"
expect_backup_fail badtype "vma: backup: query-backup: 'total' is not a non-negative integer"
expect_backup_fail other-uuid "vma: backup: vmad reports another backup now (uuid u-2)"
expect_backup_fail error-status "vma: backup: write to x: No space left on device"
run badjson "$T/x.vma"
[ "$rc" = 1 ] || fail "badjson: exit $rc"
grep -q "^vma: backup: $P: QMP protocol error: invalid JSON: " "$T/err" || fail "badjson: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "badjson: $(cat "$T/err")"

echo "PASS"
