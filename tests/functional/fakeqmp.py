# tests/functional/fakeqmp.py — a scripted QMP server for the vma-backup-qmp-*.sh tests:
# python3 fakeqmp.py SOCKET SCENARIO LOG. It serves one connection on the UNIX socket
# SOCKET, logs every command it receives to LOG (one JSON object a line) and answers as
# SCENARIO says: ok (a pretty-printed greeting, events before a reply, a reply split over
# two writes, two messages in one write), big (a 1.5 TiB backup), error-status, badtype,
# other-uuid, or a broken server: garbage, close, wrong-id, noid-error, deep, badjson,
# nul, badevent. A getfd's descriptor gets "archive bytes from the server".
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
