#!/usr/bin/env bash
# Disks and NBD exports over QMP, used by a real NBD client (qemu-io): blockdev-add/del,
# query-block, nbd-server-start (flat and QEMU's legacy address form, UNIX and TCP),
# nbd-server-add/remove/stop, block-export-add/del, query-block-exports,
# BLOCK_EXPORT_DELETED, and the errors QEMU gives for the states checked.
. "$(dirname "$0")/qmp-lib.bash"
requires qemu-io

truncate -s 64M "$T/a.raw"
truncate -s 32M "$T/b.raw"
start_vmad --monitor "$T/qmp.sock"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "block commands"
import os, random, socket, subprocess, sys, time
from qmp import QMP, expect_error

T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()

def qemu_io(uri, *cmds, ok=True, ro=False):
    args = ["qemu-io", "-f", "raw"] + (["-r"] if ro else [])
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + [uri], capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    failed = p.returncode != 0 or "failed" in out or "error" in out.lower()
    assert failed != ok, "qemu-io %s %r: rc %d\n%s" % (uri, cmds, p.returncode, out)
    return out

nbd = T + "/nbd.sock"
def unix_uri(name):
    return "nbd+unix:///%s?socket=%s" % (name, nbd)

# disks
assert q.ok("blockdev-add", {"driver": "file", "node-name": "d0",
                             "filename": T + "/a.raw"}) == {}
assert q.ok("blockdev-add", {"driver": "file", "node-name": "d1", "filename": T + "/b.raw",
                             "read-only": True, "cache": {"direct": False}}) == {}
r = q.cmd("blockdev-add", {"driver": "file", "node-name": "d0", "filename": T + "/b.raw"})
expect_error(r, "GenericError")
r = q.cmd("blockdev-add", {"driver": "file", "node-name": "dx", "filename": T + "/nope.raw"})
assert "nope.raw" in expect_error(r, "GenericError")["error"]["desc"], r
expect_error(q.cmd("blockdev-add", {"driver": "host_device", "node-name": "dx",
                                    "filename": T + "/a.raw"}), "GenericError")
expect_error(q.cmd("blockdev-add", {"driver": "file", "node-name": "dx",
                                    "filename": "/dev/null"}), "GenericError")
expect_error(q.cmd("blockdev-add", {"driver": "file", "node-name": "dx",
                                    "filename": T + "/a.raw", "direct": True,
                                    "cache": {"direct": False}}), "GenericError")
expect_error(q.cmd("blockdev-add", {"driver": "file", "node-name": "",
                                    "filename": T + "/a.raw"}), "GenericError")

blocks = q.ok("query-block")
assert [b["device"] for b in blocks] == ["d0", "d1"], blocks
b0, b1 = blocks
assert b0["type"] == "unknown" and b0["removable"] is False and b0["locked"] is False
i0, i1 = b0["inserted"], b1["inserted"]
assert i0["file"] == T + "/a.raw" and i0["node-name"] == "d0" and i0["drv"] == "file"
assert i0["ro"] is False and i1["ro"] is True
assert i0["image"] == {"filename": T + "/a.raw", "format": "raw", "virtual-size": 64 << 20}
assert i1["image"]["virtual-size"] == 32 << 20
assert i0["cache"] == {"writeback": True, "direct": False, "no-flush": False}
assert i0["encrypted"] is False and i0["backing_file_depth"] == 0

# exports need a running server
expect_error(q.cmd("nbd-server-add", {"device": "d0"}), "GenericError",
             "NBD server not running")
expect_error(q.cmd("nbd-server-stop"), "GenericError", "NBD server not running")
# QEMU's legacy address form {"type", "data"} works
assert q.ok("nbd-server-start", {"addr": {"type": "unix", "data": {"path": nbd}}}) == {}
assert os.path.exists(nbd)
expect_error(q.cmd("nbd-server-start", {"addr": {"type": "unix", "path": nbd + "2"}}),
             "GenericError", "NBD server already running")

assert q.ok("nbd-server-add", {"device": "d0", "writable": True}) == {}
assert q.ok("block-export-add", {"type": "nbd", "id": "e1", "node-name": "d1",
                                 "name": "ro"}) == {}
expect_error(q.cmd("nbd-server-add", {"device": "d0"}), "GenericError",
             "Block export id 'd0' is already in use")
expect_error(q.cmd("block-export-add", {"type": "nbd", "id": "e2", "node-name": "d0",
                                        "name": "ro"}), "GenericError")
expect_error(q.cmd("block-export-add", {"type": "nbd", "id": "e2", "node-name": "d1",
                                        "writable": True}), "GenericError")
expect_error(q.cmd("nbd-server-add", {"device": "nosuch"}), "GenericError")
assert q.ok("query-block-exports") == [
    {"id": "d0", "type": "nbd", "node-name": "d0", "shutting-down": False},
    {"id": "e1", "type": "nbd", "node-name": "d1", "shutting-down": False}]

# a real client reads and writes through the exports
qemu_io(unix_uri("d0"), "write -P 0xab 1M 1M", "read -P 0xab 1M 1M", "flush")
with open(T + "/a.raw", "rb") as f:
    f.seek(1 << 20)
    assert f.read(1 << 20) == b"\xab" * (1 << 20)
qemu_io(unix_uri("ro"), "read -P 0 0 64k", ro=True)
qemu_io(unix_uri("ro"), "write -P 1 0 4k", ok=False)

# the disk is busy while exported
expect_error(q.cmd("blockdev-del", {"node-name": "d0"}), "GenericError",
             "Node 'd0' is busy: block device is in use by block export 'd0'")
expect_error(q.cmd("nbd-server-remove", {"name": "zz"}), "GenericError",
             "Export 'zz' is not found")
assert q.ok("nbd-server-remove", {"name": "d0", "mode": "hard"}) == {}
assert q.event("BLOCK_EXPORT_DELETED")["data"] == {"id": "d0"}
qemu_io(unix_uri("d0"), "read 0 4k", ok=False)
expect_error(q.cmd("block-export-del", {"id": "zz"}), "GenericError", "Export 'zz' is not found")
# qemu-io has exited, but the server may still be tearing its connection down: a
# safe removal fails while it does, so give it a moment
for attempt in range(50):
    r = q.cmd("block-export-del", {"id": "e1"})
    if "return" in r or "has clients connected" not in r["error"]["desc"]:
        break
    time.sleep(0.1)
assert r.get("return") == {}, r
assert q.event("BLOCK_EXPORT_DELETED")["data"] == {"id": "e1"}
assert q.ok("query-block-exports") == []
assert q.ok("blockdev-del", {"node-name": "d0"}) == {}
expect_error(q.cmd("blockdev-del", {"node-name": "d0"}), "GenericError")
assert [b["device"] for b in q.ok("query-block")] == ["d1"]

# stopping removes every export (one event each) and the socket
assert q.ok("nbd-server-add", {"device": "d1", "name": "again"}) == {}
assert q.ok("nbd-server-stop") == {}
assert q.event("BLOCK_EXPORT_DELETED")["data"] == {"id": "again"}
assert not os.path.exists(nbd)
assert q.ok("query-block-exports") == []

# TCP on loopback
rnd = random.Random(os.getpid())
for attempt in range(10):
    port = str(rnd.randrange(20000, 60000))
    r = q.cmd("nbd-server-start", {"addr": {"type": "inet", "host": "127.0.0.1",
                                            "port": port}, "max-connections": 4})
    if "return" in r:
        break
else:
    raise AssertionError("no free TCP port: %r" % r)
assert q.ok("block-export-add", {"type": "nbd", "id": "t", "node-name": "d1"}) == {}
qemu_io("nbd://127.0.0.1:%s/d1" % port, "read -P 0 0 64k", ro=True)

# quit with an export still there: BLOCK_EXPORT_DELETED, SHUTDOWN, EOF
assert q.ok("quit") == {}
assert q.event("BLOCK_EXPORT_DELETED")["data"] == {"id": "t"}
q.event("SHUTDOWN")
assert q.recv() is None
EOF

wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after quit"
[ ! -e "$T/qmp.sock" ] || fail "qmp.sock left behind"
check_log
echo "PASS"
