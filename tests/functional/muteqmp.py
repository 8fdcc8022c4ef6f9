"""muteqmp.py — a QMP peer that never answers, for web-qmp-timeout.sh:
python3 muteqmp.py SOCKET MODE. Serves any number of connections on the UNIX socket
SOCKET (each in its own thread) and, by MODE: "greet" sends the greeting, answers
qmp_capabilities and then reads every command and answers none; "silent" accepts and
sends nothing at all. Each connection is held open until the client closes it."""
import json, os, socket, sys, threading

path, mode = sys.argv[1:3]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path + ".new")
srv.listen(16)
os.rename(path + ".new", path)


def serve(conn):
    with conn:
        if mode == "greet":
            conn.sendall(json.dumps({"QMP": {"version": {}, "capabilities": []}}).encode() + b"\r\n")
            buf = b""
            while b"\n" not in buf:
                d = conn.recv(4096)
                if not d:
                    return
                buf += d
            cmd = json.loads(buf.split(b"\n", 1)[0])
            reply = {"return": {}}
            if "id" in cmd:
                reply["id"] = cmd["id"]
            conn.sendall(json.dumps(reply).encode() + b"\r\n")
        while conn.recv(4096):
            pass


while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
