#!/usr/bin/env bash
# What vmad's QMP monitor refuses before any command runs (docs/security.md, "What vmad
# and vma now refuse"): a \u0000 escape in any string (json-glib would cut the string
# there: "disk.raw\u0000.iso" would open disk.raw, "out\u0000.vma" would create out), a
# key given twice at any depth (json-glib would keep the last one and run it), and a
# malformed \u escape. Each is a GenericError without id; the connection stays usable.
. "$(dirname "$0")/qmp-lib.bash"

truncate -s 1M "$T/disk.raw"
truncate -s 1M "$T/disk.raw.iso"
start_vmad --monitor "$T/qmp.sock"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "refused input"
import os, sys
from qmp import QMP, expect_error

T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()

def refused(raw, desc_part):
    q.send_raw(raw.encode() + b"\r\n")
    r = q.response()
    expect_error(r, "GenericError")
    assert "id" not in r, r
    assert desc_part in r["error"]["desc"], r
    # the connection still answers
    assert "qemu" in q.ok("query-version")

def nodes():
    return sorted(b["inserted"]["node-name"] for b in q.ok("query-block") if "inserted" in b)

# \u0000 in a file name: nothing is opened
refused('{"execute": "blockdev-add", "arguments": {"driver": "file", "node-name": "d0", '
        '"filename": "%s/disk.raw\\u0000.iso"}, "id": 1}' % T, "\\u0000 is not supported")
assert nodes() == [], nodes()

# a real disk, then \u0000 in a backup file name: nothing is created
q.ok("blockdev-add", {"driver": "file", "node-name": "d0", "filename": T + "/disk.raw"})
refused('{"execute": "backup", "arguments": {"backup-file": "%s/out\\u0000.vma"}}' % T,
        "\\u0000 is not supported")
refused('{"execute": "backup", "arguments": {"backup-file": \'%s/out\\u0000.vma\'}}' % T,
        "\\u0000 is not supported")
assert sorted(os.listdir(T)) == ["disk.raw", "disk.raw.iso", "qmp.sock", "vmad.log"], os.listdir(T)

# \u0000 anywhere: in a key, in the id, in an argument that is not a path
refused('{"execute": "query-version", "id": "a\\u0000b"}', "\\u0000 is not supported")
refused('{"execute": "query-version", "x\\u0000": 1}', "\\u0000 is not supported")

# duplicate keys at the top and deeper: the command does not run at all
refused('{"execute": "quit", "execute": "query-version"}', "duplicate key 'execute'")
refused('{"execute": "query-version", "execute": "quit"}', "duplicate key 'execute'")
refused('{"execute": "blockdev-add", "arguments": {"driver": "file", "node-name": "d1", '
        '"node-name": "d2", "filename": "%s/disk.raw.iso"}}' % T, "duplicate key 'node-name'")
refused('{"execute": "query-version", "id": {"a": 1, "\\u0061": 2}}', "duplicate key 'a'")
assert nodes() == ["d0"], nodes()

# malformed \u escapes (json-glib 1.6 leaks memory on some of them)
refused('{"execute": "query-version", "id": "\\ud800"}', "invalid \\u escape")
refused('{"execute": "query-version", "id": "\\udc00\\ud800"}', "invalid \\u escape")
refused('{"execute": "query-version", "id": "\\u12"}', "invalid \\u escape")

# what stays accepted: escaped backslashes, surrogate pairs, the same key in two objects
r = q.cmd("query-version", id="\\u0000 \U0001F600")
assert r["id"] == "\\u0000 \U0001F600", r
r = q.cmd("query-version", id={"a": {"a": 1}, "b": ["a", "a"]})
assert r["id"] == {"a": {"a": 1}, "b": ["a", "a"]}, r
q.ok("quit")
EOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after quit"
echo "PASS"
