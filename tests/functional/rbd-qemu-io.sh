#!/usr/bin/env bash
# vmad serves a Ceph RBD image (driver rbd, through librbd) over NBD, on a one-node
# cluster this test starts (tests/functional/ceph.bash). qemu-io writes patterns through
# vmad — within an object, across an object boundary, at the end of the image, write-zeroes
# with and without unmap, a discard of whole objects, FUA writes — and reads them back
# through vmad; then QEMU's own rbd driver (qemu-block-extra) reads what vmad wrote, and
# qemu-img compare finds the NBD export and the rbd: image identical. Block status
# (nbdinfo --map) says hole for objects never written and data for written ones, right
# after the writes (librbd's cache is flushed before a diff). Open errors carry librbd's
# reason (missing pool, image, snapshot, unknown cephx user, bad conf). A snapshot node
# reads the snapshot's data and refuses writes. blockdev-add over QMP opens an rbd
# node too. Two writers: QEMU writes the image while vmad has it open; the
# exclusive lock goes to QEMU and back, and both writes land (Ceph's semantics, documented
# in docs/vmad.md).
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-io qemu-img nbdinfo
requires_qemu_rbd

ceph_start
MiB=1048576
rbd_cli create --size 24M img || fail "rbd create img"
rbd_cli create --size 8M snapimg || fail "rbd create snapimg"
IMG=$(rbd_uri img)
qemu-io -f raw -c "write -P 0x77 0 1M" "$(rbd_uri snapimg)" >/dev/null || fail "qemu-io snapimg"
rbd_cli snap create rbd/snapimg@s1 || fail "rbd snap create"
qemu-io -f raw -c "write -P 0x88 0 1M" "$(rbd_uri snapimg)" >/dev/null || fail "qemu-io snapimg 2"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=rbd,node-name=drive-scsi0,pool=rbd,image=img,conf=$CEPH_CONF" \
    --blockdev "driver=rbd,node-name=snap,pool=rbd,image=snapimg,snapshot=s1,conf=$CEPH_CONF,user=admin" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=snap,writable=off"
U="nbd+unix:///drive-scsi0?socket=$T/nbd.sock"
US="nbd+unix:///snap?socket=$T/nbd.sock"

# Objects are 4 MiB: 0-4M, 4-8M, ... 20-24M. Leave 4-8M and 16-20M unwritten.
out=$(qemu-io -f raw \
    -c "write -P 0x11 0 64k" \
    -c "write -P 0x22 1M 2M" \
    -c "write -P 0x33 $((12 * MiB - 4096)) 8k" \
    -c "write -P 0x44 -f 14M 1M" \
    -c "write -P 0x66 13M 64k" \
    -c "write -z 13M 64k" \
    -c "write -P 0x99 20M 64k" \
    -c "write -z -u 20M 4M" \
    -c "write -P 0x55 $((24 * MiB - 512)) 512" \
    -c "flush" "$U" 2>&1) || fail "qemu-io writes through vmad: $out"

check_patterns() {   # FORMAT-OPTS... URI: the image holds what was written
    local out
    out=$(qemu-io "$@" \
        -c "read -P 0x11 0 64k" \
        -c "read -P 0 64k $((1 * MiB - 65536))" \
        -c "read -P 0x22 1M 2M" \
        -c "read -P 0 3M 1M" \
        -c "read -P 0 4M 4M" \
        -c "read -P 0 8M $((4 * MiB - 4096))" \
        -c "read -P 0x33 $((12 * MiB - 4096)) 8k" \
        -c "read -P 0 $((12 * MiB + 4096)) $((1 * MiB - 4096))" \
        -c "read -P 0 13M 1M" \
        -c "read -P 0x44 14M 1M" \
        -c "read -P 0 15M 1M" \
        -c "read -P 0 16M 4M" \
        -c "read -P 0 20M $((4 * MiB - 512))" \
        -c "read -P 0x55 $((24 * MiB - 512)) 512" 2>&1) || { echo "$out"; return 1; }
}
check_patterns -f raw "$U" || fail "read back through vmad"
check_patterns -f raw -r "$IMG" || fail "QEMU's rbd driver does not read what vmad wrote"
out=$(qemu-img compare -f raw -F raw "$U" "$IMG" 2>&1) || fail "qemu-img compare: $out"

# Block status, at once after the writes: data where objects were written, holes
# elsewhere (4-8M and 16-20M never written).
map=$(nbdinfo --map "$U") || fail "nbdinfo --map"
echo "$map"
py "$map" <<'EOF' || fail "block status of the rbd export"
import sys
MiB = 1 << 20
ext = []
for line in sys.argv[1].splitlines():
    off, ln, typ = line.split()[:3]
    ext.append((int(off), int(ln), int(typ) & 1))
def hole_at(pos):
    for off, ln, h in ext:
        if off <= pos < off + ln:
            return h == 1
    raise SystemExit("no extent at %d" % pos)
for pos in (0, 2 * MiB, 12 * MiB - 1, 12 * MiB, 14 * MiB, 24 * MiB - 1):
    assert not hole_at(pos), "data at %d reported as a hole" % pos
for pos in (4 * MiB, 6 * MiB, 16 * MiB, 19 * MiB):
    assert hole_at(pos), "unwritten %d not reported as a hole" % pos
assert sum(ln for _, ln, _ in ext) == 24 * MiB
EOF

# A discard of a whole object deallocates it: the object at 8M-12M holds 0x33's head.
qemu-io -f raw -c "discard 8M 4M" "$U" >/dev/null || fail "discard"
map=$(nbdinfo --map "$U") || fail "nbdinfo --map after discard"
py "$map" <<'EOF' || fail "block status after a discard of a whole object"
import sys
MiB = 1 << 20
for line in sys.argv[1].splitlines():
    off, ln, typ = (int(x) for x in line.split()[:3])
    if off <= 9 * MiB < off + ln:
        assert typ & 1, "the discarded object is still data: %s" % line
EOF
out=$(qemu-io -f raw -c "read -P 0 8M 4M" -c "read -P 0x33 12M 4096" "$U" 2>&1) ||
    fail "read after discard: $out"

# The snapshot node: the data of s1, not the head's; writes refused.
out=$(qemu-io -f raw -r -c "read -P 0x77 0 1M" "$US" 2>&1) || fail "snapshot read: $out"
if qemu-io -f raw -c "write -P 1 0 4k" "$US" >/dev/null 2>&1; then
    fail "a write to the snapshot export succeeded"
fi

# blockdev-add over QMP, query-block, and open errors with librbd's reason.
py "$T/qmp.sock" "$CEPH_CONF" <<'EOF' || fail "QMP blockdev-add rbd"
import sys
from qmp import QMP
q = QMP(sys.argv[1]); q.negotiate()
conf = sys.argv[2]
q.ok("blockdev-add", {"driver": "rbd", "node-name": "r2", "pool": "rbd", "image": "img",
                      "conf": conf, "read-only": True})
info = {b["device"]: b["inserted"] for b in q.ok("query-block")}
assert info["r2"]["drv"] == "rbd" and info["r2"]["ro"], info["r2"]
assert info["r2"]["image"]["virtual-size"] == 24 << 20, info["r2"]
assert info["r2"]["file"] == "rbd:rbd/img:conf=%s" % conf, info["r2"]
assert info["snap"]["ro"] and info["snap"]["file"].startswith("rbd:rbd/snapimg@s1:"), info["snap"]
q.ok("blockdev-del", {"node-name": "r2"})
cases = [
    ({"pool": "nopool", "image": "img"}, "pool nopool: No such file or directory"),
    ({"pool": "rbd", "image": "noimg"}, "open the image: No such file or directory"),
    ({"pool": "rbd", "image": "snapimg", "snapshot": "nosnap"},
     "open the image snapshot: No such file or directory"),
    ({"pool": "rbd", "image": "img", "user": "nobody"}, "connect to the cluster: "),
    ({"pool": "rbd", "image": "img", "conf": conf + ".missing"},
     "read the configuration %s.missing: " % conf),
]
for extra, want in cases:
    args = dict({"driver": "rbd", "node-name": "bad", "conf": conf}, **extra)
    r = q.cmd("blockdev-add", args)
    assert "error" in r, (extra, r)
    desc = r["error"]["desc"]
    assert desc.startswith("open bad: rbd:") and want in desc, (extra, desc)
    print("refused:", desc)
r = q.cmd("blockdev-add", {"driver": "rbd", "node-name": "bad", "pool": "rbd"})
assert "error" in r and "image" in r["error"]["desc"], r
r = q.cmd("blockdev-add", {"driver": "rbd", "node-name": "bad", "pool": "rbd", "image": "img",
                           "filename": "/x"})
assert "error" in r, r
assert "bad" not in [b["device"] for b in q.ok("query-block")]
EOF

# Two writers: QEMU's rbd driver writes while vmad has the image open for writing. The
# exclusive lock moves to QEMU and back to vmad; both writes succeed and are seen by both.
out=$(qemu-io -f raw -c "write -P 0xab 16M 64k" "$IMG" 2>&1) || fail "second writer: $out"
out=$(qemu-io -f raw -c "write -P 0xcd $((16 * MiB + 65536)) 64k" \
    -c "read -P 0xab 16M 64k" "$U" 2>&1) || fail "vmad after a second writer: $out"
out=$(qemu-io -f raw -r -c "read -P 0xcd $((16 * MiB + 65536)) 64k" "$IMG" 2>&1) ||
    fail "QEMU reads vmad's write after the lock moved: $out"

quit_vmad
echo "PASS (ceph up in $CEPH_UP_SECS s)"
