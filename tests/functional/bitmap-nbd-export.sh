#!/usr/bin/env bash
# A change bitmap exported over NBD (block-export-add bitmaps, nbd-server-add bitmap) as
# the meta context qemu:dirty-bitmap:NAME: after qemu-io writes at known offsets,
# nbdinfo --map=qemu:dirty-bitmap:NAME shows exactly those granules dirty (64 KiB and
# 4 KiB granularity); an enabled bitmap shows later writes, a disabled one does not;
# base:allocation and two bitmaps in one connection (one chunk and one id per context,
# DONE on the last); LIST_META_CONTEXT with no query, "qemu:", "qemu:dirty-bitmap:",
# exact and unknown names; an exported bitmap is busy (remove, clear, enable, disable,
# a second export, a backup: QEMU's message) until the export is gone; QEMU's errors.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io nbdinfo

MiB=1048576
truncate -s $((8 * MiB)) "$T/a.raw"
truncate -s $((8 * MiB)) "$T/b.raw"
truncate -s $((4 * MiB)) "$T/c.raw"
start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=d0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=d1,filename=$T/b.raw" \
    --blockdev "driver=file,node-name=d2,filename=$T/c.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=d0,writable=on"
wait_socket "$T/qmp.sock"

# map CONTEXT EXPORT: nbdinfo --map of the context, "offset length type description"
map() {
    nbdinfo --map="$1" "nbd+unix:///$2?socket=$T/nbd.sock" | awk '{print $1, $2, $3, $4}'
}

# expected SIZE GRANULARITY GRANULE...: the map nbdinfo prints for those dirty granules
expected() {
    python3 - "$@" <<'EOF'
import sys
size, g = int(sys.argv[1]), int(sys.argv[2])
dirty = {int(x) for x in sys.argv[3:]}
runs = []
for i in range((size + g - 1) // g):
    d = i in dirty
    if runs and runs[-1][2] == d:
        runs[-1][1] += g
    else:
        runs.append([i * g, g, d])
for off, ln, d in runs:
    print(off, min(ln, size - off), 1 if d else 0, "dirty" if d else "clean")
EOF
}

check_map() {   # CONTEXT EXPORT GRANULARITY GRANULE...
    local ctx=$1 exp=$2 g=$3 got want
    shift 3
    got=$(map "$ctx" "$exp") || fail "nbdinfo --map=$ctx $exp"
    want=$(expected $((8 * MiB)) "$g" "$@")
    [ "$got" = "$want" ] || fail "nbdinfo --map=$ctx $exp: expected
$want
got
$got"
}

py "$T" <<'EOF' || fail "bitmaps before the writes"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()
q.ok("block-dirty-bitmap-add", {"node": "d0", "name": "b64"})
q.ok("block-dirty-bitmap-add", {"node": "d0", "name": "b4k", "granularity": 4096})
q.ok("block-dirty-bitmap-add", {"node": "d1", "name": "other"})
q.ok("block-dirty-bitmap-add", {"node": "d2", "name": "small"})
EOF

# writes at known offsets through the writable export: granules (64 KiB / 4 KiB)
# 0/0, 16/256, 47+48/767+768 (two bytes across a boundary), 80/1280..1295 (zeroes),
# 112/1792 (a discard)
qemu-io -f raw "nbd+unix:///d0?socket=$T/nbd.sock" \
    -c 'write -P 7 0 4096' -c 'write -P 8 1048676 200' -c 'write -P 9 3145727 2' \
    -c 'write -z 5242880 65536' -c 'discard 7340032 4096' >"$T/qio.log" 2>&1 ||
    { cat "$T/qio.log"; fail "qemu-io writes"; }

py "$T" <<'EOF' || fail "export errors and the export"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()

def err(cmd, args, desc):
    r = q.cmd(cmd, args)
    assert "error" in r, (cmd, args, r)
    assert r["error"]["class"] == "GenericError", r
    assert r["error"]["desc"] == desc, (r["error"]["desc"], desc)

def exp(bitmaps, **kw):
    a = {"type": "nbd", "id": "pull", "node-name": "d0", "name": "pull", "bitmaps": bitmaps}
    a.update(kw)
    return a

add = "block-export-add"
err(add, exp(["zz"]), "Bitmap 'zz' is not found")
err(add, exp([{"node": "nope", "name": "b64"}]), "Node 'nope' not found")
err(add, exp([{"node": "d0", "name": "zz"}]), "Dirty bitmap 'zz' not found")
err(add, exp([5]), "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr")
err(add, exp([{"node": "d0"}]),
    "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr")
# string form, read-only export of a writable disk, enabled bitmap: QEMU refuses
err(add, exp(["b64"]), "Enabled bitmap 'b64' incompatible with readonly export")
err(add, exp([{"node": "d2", "name": "small"}]),
    "Bitmap 'small' of node 'd2' covers 4194304 bytes, the export 8388608")
err(add, exp(["b4k", "b4k"], writable=True),
    "Bitmap 'b4k' is currently in use by another operation and cannot be used")
err(add, exp([{"node": "d0", "name": "b4k"}] * 16),
    "nbd-server-add pull: 16 bitmaps (at most 15 per export)")
# a failed add leaves nothing busy and no export
for b in q.ok("query-block")[0]["inserted"]["dirty-bitmaps"]:
    assert b["busy"] is False, b
assert [e["id"] for e in q.ok("query-block-exports")] == ["e0"]

# a point in time: b64 stops recording; b4k (object form: no enabled check) records on
q.ok("block-dirty-bitmap-disable", {"node": "d0", "name": "b64"})
q.ok(add, exp(["b64", {"node": "d0", "name": "b4k"}]))
bm = {b["name"]: b for b in q.ok("query-block")[0]["inserted"]["dirty-bitmaps"]}
assert bm["b64"]["busy"] and bm["b4k"]["busy"], bm
assert bm["b4k"]["recording"] and not bm["b64"]["recording"], bm

busy = "Bitmap '%s' is currently in use by another operation and cannot be used"
for cmd in ("block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
            "block-dirty-bitmap-enable", "block-dirty-bitmap-disable"):
    err(cmd, {"node": "d0", "name": "b64"}, busy % "b64")
err("block-dirty-bitmap-merge",
    {"node": "d0", "target": "b4k", "bitmaps": [{"node": "d1", "name": "other"}]}, busy % "b4k")
err(add, {"type": "nbd", "id": "pull2", "node-name": "d0", "name": "pull2", "bitmaps": ["b64"]},
    busy % "b64")
r = q.cmd("backup", {"backup-file": sys.argv[1] + "/x.vma", "devlist": "d0",
                     "bitmap": "b4k"})
assert "error" in r and busy % "b4k" in r["error"]["desc"], r
EOF

check_map qemu:dirty-bitmap:b64 pull 65536 0 16 47 48 80 112
check_map qemu:dirty-bitmap:b4k pull 4096 0 256 767 768 $(seq 1280 1295) 1792

# more writes while exported: the enabled bitmap shows them at once, the disabled not
qemu-io -f raw "nbd+unix:///d0?socket=$T/nbd.sock" -c 'write -P 1 6291456 4096' \
    >"$T/qio.log" 2>&1 || { cat "$T/qio.log"; fail "qemu-io write"; }
check_map qemu:dirty-bitmap:b64 pull 65536 0 16 47 48 80 112
check_map qemu:dirty-bitmap:b4k pull 4096 0 256 767 768 $(seq 1280 1295) 1536 1792

# nbdinfo lists the contexts; an export without bitmaps has none of them
nbdinfo --list "nbd+unix:///?socket=$T/nbd.sock" >"$T/list" 2>&1 || fail "nbdinfo --list"
grep -q 'qemu:dirty-bitmap:b64' "$T/list" || { cat "$T/list"; fail "contexts not listed"; }
out=$(nbdinfo --map=qemu:dirty-bitmap:b64 "nbd+unix:///d0?socket=$T/nbd.sock" 2>&1) &&
    fail "the bitmap's context offered on an export without it: $out"
echo "$out" | grep -q 'does not support metadata context' || fail "nbdinfo: $out"

py "$T" <<'EOF' || fail "raw meta context negotiation"
import sys
from nbdmeta import NbdClient, NbdError, NBD_CMD_FLAG_REQ_ONE
sock = sys.argv[1] + "/nbd.sock"
MiB = 1 << 20
c = NbdClient(sock)
c.structured()
allc = ["base:allocation", "qemu:dirty-bitmap:b64", "qemu:dirty-bitmap:b4k"]
assert c.list_meta("pull", []) == allc, c.list_meta("pull", [])
assert c.list_meta("pull", ["qemu:"]) == allc[1:]
assert c.list_meta("pull", ["qemu:dirty-bitmap:"]) == allc[1:]
assert c.list_meta("pull", ["base:"]) == allc[:1]
assert c.list_meta("pull", ["qemu:dirty-bitmap:b4k", "qemu:nope", "x:y"]) == allc[2:]
assert c.list_meta("d0", []) == ["base:allocation"]
# SET takes no wildcards: "qemu:dirty-bitmap:" selects nothing
assert c.set_meta("pull", ["qemu:dirty-bitmap:", "qemu:"]) == {}
ids = c.set_meta("pull", ["qemu:dirty-bitmap:b4k", "base:allocation", "qemu:dirty-bitmap:b64",
                          "qemu:dirty-bitmap:b4k"])
assert sorted(ids) == sorted(allc), ids
c.go("pull")
assert c.size == 8 * MiB
# one chunk per context, in the export's order, every one tiling the request
chunks = c.block_status(0, 2 * MiB)
assert [cid for cid, _ in chunks] == [ids[n] for n in allc], (chunks, ids)
for cid, ext in chunks:
    assert sum(l for l, _ in ext) == 2 * MiB, (cid, ext)
alloc, b64, b4k = (dict(chunks)[ids[n]] for n in allc)
assert b64 == [(65536, 1), (15 * 65536, 0), (65536, 1), (15 * 65536, 0)], b64
assert b4k[:4] == [(4096, 1), (255 * 4096, 0), (4096, 1), (MiB - 4096, 0)], b4k
assert all(f & ~3 == 0 for _, f in alloc), alloc
# an unaligned request: extents start at the request, runs span granules
chunks = dict(c.block_status(3 * MiB - 100, 300))
assert chunks[ids[allc[1]]] == [(300, 1)], chunks
assert chunks[ids[allc[2]]] == [(300, 1)], chunks
# REQ_ONE: one extent per context
chunks = c.block_status(0, 4 * MiB, NBD_CMD_FLAG_REQ_ONE)
assert len(chunks) == 3 and all(len(e) == 1 for _, e in chunks), chunks
assert dict(chunks)[ids[allc[1]]] == [(65536, 1)], chunks
# beyond the end: an error chunk
try:
    c.block_status(8 * MiB - 4096, 8192)
    raise AssertionError("block status beyond the end answered")
except NbdError as e:
    assert e.args[0] == 22, e
c.close()

# contexts chosen on another export do not carry over to GO
c = NbdClient(sock)
c.structured()
assert c.set_meta("pull", ["qemu:dirty-bitmap:b64"])
c.go("d0")
try:
    c.block_status(0, 4096)
    raise AssertionError("block status without a context answered")
except NbdError as e:
    assert e.args[0] == 22, e
c.close()

# only a bitmap, no base:allocation
c = NbdClient(sock)
c.structured()
ids = c.set_meta("pull", ["qemu:dirty-bitmap:b64"])
c.go("pull")
(cid, ext), = c.block_status(7 * MiB, MiB)
assert cid == ids["qemu:dirty-bitmap:b64"] and ext == [(65536, 1), (MiB - 65536, 0)], ext
c.close()
EOF

py "$T" <<'EOF' || fail "export removal frees the bitmaps; nbd-server-add bitmap"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()
q.ok("block-export-del", {"id": "pull"})
bm = {b["name"]: b for b in q.ok("query-block")[0]["inserted"]["dirty-bitmaps"]}
assert not bm["b64"]["busy"] and not bm["b4k"]["busy"], bm
q.ok("block-dirty-bitmap-enable", {"node": "d0", "name": "b64"})
q.ok("block-dirty-bitmap-remove", {"node": "d0", "name": "b4k"})
# nbd-server-add's single bitmap (string form): enabled + read-only export refused
r = q.cmd("nbd-server-add", {"device": "d1", "name": "n1", "bitmap": "other"})
assert r["error"]["desc"] == "Enabled bitmap 'other' incompatible with readonly export", r
r = q.cmd("nbd-server-add", {"device": "d1", "name": "n1", "bitmap": "zz"})
assert r["error"]["desc"] == "Bitmap 'zz' is not found", r
q.ok("nbd-server-add", {"device": "d1", "name": "n1", "bitmap": "other", "writable": True})
bm = q.ok("query-block")[1]["inserted"]["dirty-bitmaps"]
assert bm[0]["name"] == "other" and bm[0]["busy"], bm
EOF

qemu-io -f raw "nbd+unix:///n1?socket=$T/nbd.sock" -c 'write -P 3 131072 65536' \
    >"$T/qio.log" 2>&1 || { cat "$T/qio.log"; fail "qemu-io write n1"; }
check_map qemu:dirty-bitmap:other n1 65536 2

py "$T" <<'EOF' || fail "nbd-server-remove frees the bitmap"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()
q.ok("nbd-server-remove", {"name": "n1"})
q.ok("block-dirty-bitmap-remove", {"node": "d1", "name": "other"})
# the server's stop frees them as well
q.ok("block-export-add", {"type": "nbd", "id": "p2", "node-name": "d0", "name": "p2", "writable": True,
                          "bitmaps": ["b64"]})
q.ok("nbd-server-stop")
q.ok("block-dirty-bitmap-remove", {"node": "d0", "name": "b64"})
EOF

quit_vmad
echo PASS
