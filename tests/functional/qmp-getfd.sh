#!/usr/bin/env bash
# getfd/closefd over the real socket with SCM_RIGHTS: vmad holds a passed pipe end (the
# reader sees no EOF) until closefd, replacement, or the end of the connection closes it;
# descriptors are per connection; errors for a missing descriptor, a bad name, an unknown
# name; unclaimed descriptors do not leak.
. "$(dirname "$0")/qmp-lib.bash"

start_vmad --monitor "$T/qmp.sock"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "getfd/closefd"
import os, select, sys
from qmp import QMP, expect_error

T = sys.argv[1]

def eof(r, timeout=0.0):
    """The write end of pipe r is closed everywhere (vmad included)."""
    ready, _, _ = select.select([r], [], [], timeout)
    return bool(ready) and os.read(r, 1) == b""

def passed_pipe(q, name, split=False):
    r, w = os.pipe()
    if split:
        # the descriptor travels with the first half of the command
        q.send_raw(b'{"execute": "getfd", ', fds=[w])
        q.send_raw(b'"arguments": {"fdname": "%s"}}' % name.encode())
        assert q.response() == {"return": {}}
    else:
        assert q.cmd("getfd", {"fdname": name}, fds=[w]) == {"return": {}}
    os.close(w)
    return r

a = QMP(T + "/qmp.sock")
a.negotiate()
b = QMP(T + "/qmp.sock")
b.negotiate()

expect_error(a.cmd("getfd", {"fdname": "x"}), "GenericError",
             "No file descriptor supplied via SCM_RIGHTS")
expect_error(a.cmd("closefd", {"fdname": "x"}), "GenericError",
             "File descriptor named 'x' not found")

r1 = passed_pipe(a, "out")
assert not eof(r1, 0.2), "vmad does not hold the passed descriptor"
# per connection: b does not see a's descriptor
expect_error(b.cmd("closefd", {"fdname": "out"}), "GenericError",
             "File descriptor named 'out' not found")
assert a.cmd("closefd", {"fdname": "out"}) == {"return": {}}
assert eof(r1, 5), "closefd did not close the descriptor"

# replacing a name closes the old descriptor
r2 = passed_pipe(a, "out", split=True)
r3 = passed_pipe(a, "out")
assert eof(r2, 5) and not eof(r3, 0.2)

# a refused name leaves nothing behind once the connection ends
rr, ww = os.pipe()
expect_error(a.cmd("getfd", {"fdname": "9lives"}, fds=[ww]), "GenericError",
             "Parameter 'fdname' expects a name not starting with a digit")
os.close(ww)

# many descriptors that nobody claims
extra = [os.pipe() for _ in range(40)]
a.send_raw(b'{"execute": "query-version", "id": 1}', fds=[w for _, w in extra])
for _, w in extra:
    os.close(w)
assert a.response()["id"] == 1

# b keeps its own
r4 = passed_pipe(b, "out")

# closing a connection closes everything it holds
a.close()
assert eof(r3, 5) and eof(rr, 5)
for r, _ in extra:
    assert eof(r, 5)
assert not eof(r4, 0.2)
assert b.ok("query-version")
b.close()
assert eof(r4, 5)
EOF

kill -0 "$VMAD_PID" 2>/dev/null || fail "vmad died"
kill -TERM "$VMAD_PID"
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after SIGTERM"
check_log
echo "PASS"
