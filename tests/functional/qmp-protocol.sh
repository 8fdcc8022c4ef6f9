#!/usr/bin/env bash
# QMP protocol against a real vmad over its UNIX socket: socket permissions, greeting,
# negotiation, commands before negotiation, unknown commands, invalid JSON, argument
# checking (wrong type, unknown, missing), id echo, two clients at once, events only in
# command mode, and quit: reply, SHUTDOWN, exit 0, sockets and pid file removed.
. "$(dirname "$0")/qmp-lib.bash"

start_vmad --monitor "$T/qmp.sock" --monitor "path=$T/grp.sock,mode=0660" \
    --pidfile "$T/vmad.pid"
wait_socket "$T/qmp.sock"
wait_socket "$T/grp.sock"

[ "$(stat -c %a "$T/qmp.sock")" = 600 ] || fail "qmp.sock mode $(stat -c %a "$T/qmp.sock")"
[ "$(stat -c %a "$T/grp.sock")" = 660 ] || fail "grp.sock mode $(stat -c %a "$T/grp.sock")"
[ "$(cat "$T/vmad.pid")" = "$VMAD_PID" ] || fail "pid file holds $(cat "$T/vmad.pid")"

py "$T" <<'EOF' || fail "protocol checks"
import sys
from qmp import QMP, expect_error

T = sys.argv[1]
a = QMP(T + "/qmp.sock")
assert a.greeting == {"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 0},
                                          "package": "vmad 0.1.0"},
                              "capabilities": ["oob"]}}, a.greeting

# before negotiation
r = a.cmd("query-version", id=1)
assert r == {"id": 1, "error": {"class": "CommandNotFound",
             "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}, r
expect_error(a.cmd("no-such-command"), "CommandNotFound",
             "Expecting capabilities negotiation with 'qmp_capabilities'")
assert a.cmd("qmp_capabilities", id="neg") == {"return": {}, "id": "neg"}
expect_error(a.cmd("qmp_capabilities"), "CommandNotFound",
             "Capabilities negotiation is already complete, command ignored")

# command mode
assert a.ok("query-version") == a.greeting["QMP"]["version"]
names = [c["name"] for c in a.ok("query-commands")]
for n in ("qmp_capabilities", "query-version", "query-commands", "query-qmp-schema", "quit",
          "query-block", "blockdev-add", "blockdev-del", "nbd-server-start", "nbd-server-add",
          "nbd-server-remove", "nbd-server-stop", "block-export-add", "block-export-del",
          "getfd", "closefd"):
    assert n in names, n
schema = a.ok("query-qmp-schema")
assert isinstance(schema, list) and {"command": "quit"} in schema, schema[:3]
assert sorted(d["command"] for d in schema if "command" in d) == sorted(names)

r = a.cmd("no-such-command", id=2)
assert r == {"id": 2, "error": {"class": "CommandNotFound",
             "desc": "The command no-such-command has not been found"}}, r

# invalid JSON, then the connection still works
a.send_raw(b'{"execute": }')
expect_error(a.response(), "GenericError")
a.send_raw(b'{"execute": "query-version", "id": 3, }')
r = a.response()
assert r["error"]["desc"].startswith("JSON parse error"), r
a.send_raw(b'[1, 2]')
expect_error(a.response(), "GenericError", "QMP input must be a JSON object")
a.send_raw(b'{"execute": 5}')
expect_error(a.response(), "GenericError", "QMP input member 'execute' must be a string")
a.send_raw(b'{"execute": "query-version", "arguments": [1], "id": 4}')
r = a.response()
assert r == {"id": 4, "error": {"class": "GenericError",
             "desc": "QMP input member 'arguments' must be an object"}}, r
a.send_raw(b'{"execute": "query-version", "bogus": 1}')
expect_error(a.response(), "GenericError", "QMP input member 'bogus' is unexpected")
a.send_raw(b'{"arguments": {}}')
expect_error(a.response(), "GenericError", "QMP input lacks member 'execute'")

# arguments checked against the schema
expect_error(a.cmd("blockdev-del", {"node-name": 5}), "GenericError",
             "Invalid parameter type for 'node-name', expected: string")
expect_error(a.cmd("blockdev-del", {"node-name": "x", "force": True}), "GenericError",
             "Parameter 'force' is unexpected")
expect_error(a.cmd("blockdev-del"), "GenericError", "Parameter 'node-name' is missing")
expect_error(a.cmd("nbd-server-start", {"addr": {"type": "unix"}}), "GenericError",
             "Parameter 'addr.path' is missing")
expect_error(a.cmd("nbd-server-start", {"addr": {"type": "unix", "path": "x"},
                                        "max-connections": -1}),
             "GenericError", "Parameter 'max-connections' expects uint32")
expect_error(a.cmd("nbd-server-remove", {"name": "x", "mode": "gentle"}), "GenericError",
             "Parameter 'mode' does not accept value 'gentle'")
expect_error(a.cmd("blockdev-add", {"driver": "file", "node-name": "d", "filename": "f",
                                    "read-only": "yes"}),
             "GenericError", "Invalid parameter type for 'read-only', expected: boolean")

# id is echoed whatever JSON value it is
for ident in (7, -1, "str", {"a": [1, None, {"b": "c"}]}, [1, 2], True, None, 0.5):
    r = a.cmd("query-version", id=ident)
    assert r.get("id", "MISSING") == ident and "return" in r, (ident, r)
    r = a.cmd("nope", id=ident)
    assert r.get("id", "MISSING") == ident and "error" in r, (ident, r)

# pipelined requests are answered in order
a.send_raw(b'{"execute": "query-version", "id": "p1"}{"execute": "nope", "id": "p2"}'
           b'{"execute": "query-commands", "id": "p3"}')
assert [a.response()["id"] for _ in range(3)] == ["p1", "p2", "p3"]

# a second client at once, on the other monitor; an unnegotiated third one
b = QMP(T + "/grp.sock")
c = QMP(T + "/qmp.sock")
b.negotiate()
assert b.ok("query-version") == a.ok("query-version")
assert a.cmd("query-block", id="a") == {"return": [], "id": "a"}
assert b.cmd("query-block", id="b") == {"return": [], "id": "b"}
expect_error(c.cmd("query-block"), "CommandNotFound")

# quit: the reply first, then SHUTDOWN to every negotiated client, then EOF
assert b.cmd("quit", id="q") == {"return": {}, "id": "q"}
for q in (a, b):
    ev = q.event("SHUTDOWN")
    assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}, ev
    assert q.recv() is None, "connection not closed after SHUTDOWN"
assert c.recv() is None   # no event for the client still negotiating
EOF

wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after quit"
[ ! -e "$T/qmp.sock" ] || fail "qmp.sock left behind"
[ ! -e "$T/grp.sock" ] || fail "grp.sock left behind"
[ ! -e "$T/vmad.pid" ] || fail "pid file left behind"
check_log
echo "PASS"
