#!/usr/bin/env bash
# Node names follow QEMU's rule at every entry point, with QEMU's messages: QMP
# blockdev-add and vmad --blockdev refuse '../x', '.hidden', 'a/b', '', names starting
# with a digit or '_', spaces, control characters, non-ASCII ("Invalid node-name: '<n>'")
# and names over 31 bytes ("Node name too long"). Names the rule accepts make archives
# `vma extract` restores; 'vmstate', well-formed but the archive's name for the VM state
# stream, makes backup fail at start, with nothing written.
. "$(dirname "$0")/qmp-lib.bash"
export VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "vma not built"

head -c $((1024 * 1024 + 4096)) /dev/urandom >"$T/a.raw"
truncate -s 1M "$T/b.raw"
LONG31=a123456789012345678901234567890      # 31 bytes: the longest QEMU allows
LONG32=${LONG31}x

# ---- the command line ----
for n in ../x .hidden a/b 1disk _x "a b" "dré" "a:b" "a@b"; do
    arg="driver=file,node-name=$n,filename=$T/a.raw"
    expect_startup_error -F "--blockdev $arg: Invalid node-name: '$n'" --blockdev "$arg"
done
arg="driver=file,node-name=,filename=$T/a.raw"
expect_startup_error -F "--blockdev $arg: Invalid node-name: ''" --blockdev "$arg"
arg="driver=file,node-name=$LONG32,filename=$T/a.raw"
expect_startup_error -F "--blockdev $arg: Node name too long" --blockdev "$arg"
# the node-name is checked before the file is looked at, as in QEMU
arg="driver=file,node-name=../x,filename=$T/nosuch.raw"
expect_startup_error -F "--blockdev $arg: Invalid node-name: '../x'" --blockdev "$arg"

# ---- QMP ----
start_vmad --monitor "$T/qmp.sock"
wait_socket "$T/qmp.sock"
py "$T" "$LONG31" <<'EOF' || fail "blockdev-add node names"
import sys
from qmp import QMP, expect_error
T, long31 = sys.argv[1], sys.argv[2]
q = QMP(T + "/qmp.sock")
q.negotiate()

def add(name, path="/a.raw"):
    return q.cmd("blockdev-add", {"driver": "file", "node-name": name, "filename": T + path})

# control characters come back C-escaped; everything else as given, as QEMU shows it
for bad, shown in [("../x",) * 2, (".hidden",) * 2, ("a/b",) * 2, ("",) * 2, ("1disk",) * 2,
                   ("_x",) * 2, ("-x",) * 2, ("a b",) * 2, ("dr\u00e9",) * 2, ('a"b',) * 2,
                   ("a/../../etc",) * 2, ("x,y",) * 2, ("a\nb", "a\\nb"),
                   ("a\tb", "a\\tb"), ("a\x7fb", "a\\177b"), ("a\x01b", "a\\001b")]:
    expect_error(add(bad), "GenericError", "Invalid node-name: '%s'" % shown)
expect_error(add(long31 + "x"), "GenericError", "Node name too long")
expect_error(add("../x", "/nosuch.raw"), "GenericError", "Invalid node-name: '../x'")
assert q.ok("query-block") == [], "a refused name left a node"

# what the rule accepts: letters, digits, '-', '.', '_' after a leading letter, 31 bytes
q.ok("blockdev-add", {"driver": "file", "node-name": "Disk.0_a-b", "filename": T + "/a.raw"})
q.ok("blockdev-add", {"driver": "file", "node-name": long31, "filename": T + "/b.raw"})
assert [b["device"] for b in q.ok("query-block")] == ["Disk.0_a-b", long31]
EOF

# a backup of such nodes is one that vma extract restores
py "$T" <<'EOF' || fail "backup of well-formed odd names"
import sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()
q.ok("backup", {"backup-file": T + "/good.vma"})
for _ in range(600):
    st = q.ok("query-backup")
    if st.get("status") != "active":
        break
    time.sleep(0.05)
assert st["status"] == "done", st
EOF
"$VMA" verify "$T/good.vma" >"$T/verify" 2>&1 || fail "verify: $(cat "$T/verify")"
"$VMA" extract "$T/good.vma" "$T/x" >"$T/extract" 2>&1 || fail "extract: $(cat "$T/extract")"
cmp -s "$T/a.raw" "$T/x/disk-Disk.0_a-b.raw" || fail "extracted Disk.0_a-b differs"
cmp -s "$T/b.raw" "$T/x/disk-$LONG31.raw" || fail "extracted $LONG31 differs"

# 'vmstate' is a valid node name, but a disk of that name cannot go into an archive
py "$T" <<'EOF' || fail "vmstate node"
import os, sys
from qmp import QMP, expect_error
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
q.ok("blockdev-add", {"driver": "file", "node-name": "vmstate", "filename": T + "/b.raw",
                      "read-only": True, "locking": "off"})
before = q.ok("query-backup")
msg = ('backup: refusing device name "vmstate": reserved for the VM state stream of an '
       'archive (the disk would be stored and restored as VM state)')
# listed by name (read-only nodes are backed up only when listed)
expect_error(q.cmd("backup", {"backup-file": T + "/vmstate.vma", "devlist": "vmstate"}),
             "GenericError", msg)
expect_error(q.cmd("backup", {"backup-file": T + "/vmstate.vma",
                              "devlist": "Disk.0_a-b,vmstate"}), "GenericError", msg)
assert not os.path.exists(T + "/vmstate.vma"), "a refused backup wrote its file"
assert q.ok("query-backup") == before, "a refused backup changed the status"
# by default every writable disk: a writable 'vmstate' is refused the same way
q.ok("blockdev-del", {"node-name": "vmstate"})
q.ok("blockdev-del", {"node-name": "Disk.0_a-b"})
q.ok("blockdev-add", {"driver": "file", "node-name": "vmstate", "filename": T + "/a.raw"})
expect_error(q.cmd("backup", {"backup-file": T + "/vmstate.vma"}), "GenericError", msg)
assert not os.path.exists(T + "/vmstate.vma"), "a refused backup wrote its file"
assert q.ok("query-backup") == before, "a refused backup changed the status"
q.ok("quit")
EOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC"
check_log
echo "PASS"
