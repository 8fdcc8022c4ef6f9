#!/usr/bin/env bash
# Hostile QMP clients must not hurt vmad or other clients: binary noise, a 10 MB line,
# a 10 MB string inside an object, deep nesting, control-character resynchronisation,
# clients that vanish in the middle of a command, a client that never reads its replies.
# Afterwards another client still works, and SIGTERM shuts vmad down cleanly (SHUTDOWN
# with reason host-signal, exit 0, socket and pid file removed).
. "$(dirname "$0")/qmp-lib.bash"

start_vmad --monitor "$T/qmp.sock" --pidfile "$T/vmad.pid"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "robustness checks"
import os, random, socket, struct, sys, time
from qmp import QMP, expect_error

T = sys.argv[1]
S = T + "/qmp.sock"

def works(q, tag):
    r = q.cmd("query-version", id=tag)
    assert r.get("id") == tag and "return" in r, r

watcher = QMP(S)
watcher.negotiate()

# binary noise: error replies, but few (at most one splitter error per read, plus one per
# accidental complete value such as "{\xa0}": about one per 2.5 KiB of noise), no crash
rnd = random.Random(7)
noisy = QMP(S)
noisy.negotiate()
noise = bytes(rnd.getrandbits(8) for _ in range(1 << 20))
noisy.send_raw(noise + b"\x01\n")      # end with a reset byte: back to a clean state
time.sleep(0.3)
noisy.sock.settimeout(0.2)
replies = 0
while True:
    try:
        data = noisy.sock.recv(1 << 20)
    except socket.timeout:
        break
    if not data:
        raise AssertionError("vmad closed the noisy connection")
    noisy.buf += data
while b"\r\n" in noisy.buf:
    msg = noisy.recv()
    assert msg["error"]["class"] in ("GenericError", "CommandNotFound"), msg
    replies += 1
assert 0 < replies <= len(noise) // 1000, replies
works(noisy, "after-noise")
works(watcher, "w1")

# a 10 MB line of garbage: one error, then the same connection works
big = QMP(S)
big.negotiate()
big.send_raw(b"A" * (10 << 20) + b"\n")
expect_error(big.response(timeout=30), "GenericError",
             "JSON parse error, stray input outside a JSON object")
works(big, "after-10MB-line")

# a 10 MB string inside a command: "message too large", then resynchronised
big.send_raw(b'{"execute": "' + b"x" * (10 << 20) + b'", "id": 1}')
expect_error(big.response(timeout=30), "GenericError", "JSON parse error, message too large")
works(big, "after-10MB-object")

# nesting deeper than 1024
big.send_raw(b"[" * 2000 + b"]" * 2000)
expect_error(big.response(), "GenericError", "JSON parse error, nesting too deep")
works(big, "after-deep")

# a control character discards a half-sent command
big.send_raw(b'{"execute": "qui\x1b{"execute": "query-version", "id": "resync"}')
r = big.response()
assert r.get("id") == "resync" and "return" in r, r
# integers beyond int64 are refused, not wrapped
big.send_raw(b'{"execute": "query-version", "id": 18446744073709551617}')
expect_error(big.response(), "GenericError", "JSON parse error, integer literal out of range")
works(watcher, "w2")

# clients that vanish: before the greeting, mid-command, with a reset
for i in range(30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(S)
    if i % 3 == 1:
        s.sendall(b'{"execute": "qmp_capabilities"}{"execute": "query-qmp-schema"}')
    elif i % 3 == 2:
        s.sendall(b'{"execute": "qmp_capabilities"}{"execute": "query-qmp-schema"}{"exec')
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
works(watcher, "w3")

# a client that sends and never reads: vmad stops reading it, others are not affected
hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
hog.connect(S)
hog.setblocking(False)
req = b'{"execute": "qmp_capabilities"}' + b'{"execute": "query-qmp-schema"}' * 100
sent = 0
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        sent += hog.send(req)
    except BlockingIOError:
        break
assert time.monotonic() < deadline, "vmad kept reading from a client that never reads"
works(watcher, "w4")
hog.close()
works(watcher, "w5")

fresh = QMP(S)
fresh.negotiate()
works(fresh, "fresh")
EOF

kill -0 "$VMAD_PID" 2>/dev/null || fail "vmad died"

# SIGTERM: SHUTDOWN(host-signal) to a negotiated client, clean exit
py "$T" "$VMAD_PID" <<'EOF' || fail "SIGTERM shutdown"
import os, signal, sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()
os.kill(int(sys.argv[2]), signal.SIGTERM)
ev = q.event("SHUTDOWN")
assert ev["data"] == {"guest": False, "reason": "host-signal"}, ev
assert q.recv() is None
EOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after SIGTERM"
[ ! -e "$T/qmp.sock" ] || fail "qmp.sock left behind"
[ ! -e "$T/vmad.pid" ] || fail "pid file left behind"
check_log
echo "PASS"
