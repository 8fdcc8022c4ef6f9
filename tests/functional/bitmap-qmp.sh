#!/usr/bin/env bash
# The block-dirty-bitmap-* commands over QMP: QEMU's arguments, defaults and error
# messages for each command, query-block's dirty-bitmaps (QEMU's fields, newest first,
# absent without bitmaps), marking by write, write-zeroes and discard, merge of
# different granularities, backup's bitmap argument errors.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io

truncate -s $((8 * 1048576)) "$T/a.raw"
truncate -s $((4 * 1048576)) "$T/b.raw"
start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=d0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=d1,filename=$T/b.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=d0,writable=on"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "bitmap QMP"
import sys
from qmp import QMP, expect_error
from bitmaplib import *

T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
uri = "nbd+unix:///d0?socket=%s/nbd.sock" % T

def err(cmd, args, desc):
    r = q.cmd(cmd, args)
    assert "error" in r, (cmd, args, r)
    assert r["error"]["class"] == "GenericError", r
    assert r["error"]["desc"] == desc, (r["error"]["desc"], desc)

blk = q.ok("query-block")
assert all("dirty-bitmaps" not in b["inserted"] for b in blk), blk

add = "block-dirty-bitmap-add"
err(add, {"node": "nope", "name": "x"}, "Cannot find device='nope' nor node-name='nope'")
err(add, {"node": "d0", "name": ""}, "Bitmap name cannot be empty")
err(add, {"node": "d0", "name": "x" * 1024}, "Bitmap name too long: " + "x" * 1024)
err(add, {"node": "d0", "name": "x", "granularity": 3000}, "Granularity must be power of 2 and at least 512")
err(add, {"node": "d0", "name": "x", "granularity": 0}, "Granularity must be power of 2 and at least 512")
err(add, {"node": "d0", "name": "x", "granularity": 2048}, "Granularity must be between 4096 and 67108864")
err(add, {"node": "d0", "name": "x", "granularity": 1 << 27}, "Granularity must be between 4096 and 67108864")
r = q.cmd(add, {"node": "d0", "name": "x", "granularity": -1})
assert r["error"]["desc"] == "Parameter 'granularity' expects uint32", r
q.ok(add, {"node": "d0", "name": "b64"})
q.ok(add, {"node": "d0", "name": "b4k", "granularity": 4096, "disabled": True})
q.ok(add, {"node": "d0", "name": "big", "granularity": 1 << 26})
err(add, {"node": "d0", "name": "b64"}, "Bitmap already exists: b64")

bm = bitmaps(q, "d0")
assert list(bm) == ["big", "b4k", "b64"], list(bm)        # newest first
assert bm["b64"] == {"name": "b64", "count": 0, "granularity": 65536, "recording": True,
                     "busy": False, "persistent": False}, bm["b64"]
assert bm["b4k"]["recording"] is False and bm["b4k"]["granularity"] == 4096

qemu_io(uri, "write -P 1 4096 512", "write -z 1048576 65537", "discard 7340032 4096")
bm = bitmaps(q, "d0")
assert bm["b64"]["count"] == 65536 * 4, bm["b64"]         # 1 + 2 (65537 bytes) + 1
assert bm["b4k"]["count"] == 0, bm["b4k"]                 # disabled
assert bm["big"]["count"] == 1 << 26, bm["big"]           # more than the disk

for cmd in ("block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
            "block-dirty-bitmap-enable", "block-dirty-bitmap-disable"):
    err(cmd, {"node": "nope", "name": "b64"}, "Node 'nope' not found")
    err(cmd, {"node": "d0", "name": "zz"}, "Dirty bitmap 'zz' not found")
    r = q.cmd(cmd, {"node": "d0"})
    assert r["error"]["desc"] == "Parameter 'name' is missing", r

q.ok("block-dirty-bitmap-enable", {"node": "d0", "name": "b4k"})
q.ok("block-dirty-bitmap-enable", {"node": "d0", "name": "b4k"})      # idempotent
qemu_io(uri, "write -P 2 8192 4096")
assert bitmaps(q, "d0")["b4k"]["count"] == 4096
q.ok("block-dirty-bitmap-merge", {"node": "d0", "target": "b4k", "bitmaps": ["b64"]})
assert bitmaps(q, "d0")["b4k"]["count"] == 65536 * 4, bitmaps(q, "d0")["b4k"]
q.ok(add, {"node": "d1", "name": "o"})
err("block-dirty-bitmap-merge", {"node": "d0", "target": "b4k", "bitmaps": [{"node": "d1", "name": "o"}]},
    "Bitmaps are of different sizes (destination size is 8388608, source size is 4194304) and can't be merged")
err("block-dirty-bitmap-merge", {"node": "d0", "target": "b4k", "bitmaps": ["b64", "zz"]},
    "Dirty bitmap 'zz' not found")
err("block-dirty-bitmap-merge", {"node": "d0", "target": "b4k", "bitmaps": [7]},
    "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr")
err("block-dirty-bitmap-merge", {"node": "d0", "target": "nn", "bitmaps": ["b64"]},
    "Dirty bitmap 'nn' not found")
q.ok("block-dirty-bitmap-clear", {"node": "d0", "name": "b4k"})
assert bitmaps(q, "d0")["b4k"]["count"] == 0
q.ok("block-dirty-bitmap-disable", {"node": "d0", "name": "b4k"})
assert bitmaps(q, "d0")["b4k"]["recording"] is False
q.ok("block-dirty-bitmap-remove", {"node": "d0", "name": "b4k"})
assert "b4k" not in bitmaps(q, "d0")

# backup's bitmap arguments
err("backup", {"backup-file": T + "/x.vma", "bitmap-mode": "never"},
    "Cannot specify bitmap sync mode without a bitmap")
r = q.cmd("backup", {"backup-file": T + "/x.vma", "bitmap": "b64", "bitmap-mode": "always"})
assert r["error"]["desc"] == "Parameter 'bitmap-mode' does not accept value 'always'", r
err("backup", {"backup-file": T + "/x.vma", "bitmap": "b64"},
    "backup: d1: Dirty bitmap 'b64' not found")
import os
assert not os.path.exists(T + "/x.vma")
assert not bitmaps(q, "d0")["b64"]["busy"]               # given back after the refusal
q.ok("quit")
EOF
wait_exit 20
check_log
echo "PASS bitmap QMP"
