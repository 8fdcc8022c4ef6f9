#!/usr/bin/env bash
# The vma driver in vmad: --blockdev driver=vma + --export, read by qemu-img convert,
# nbdcopy and qemu-io -r, equals the source; query-block shows it as a read-only "vma"
# node; over QMP a writable export, read-only=off and an unknown device are refused with
# QEMU-style messages, and the node can be deleted once unexported.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-img qemu-io nbdcopy python3
VMA=${VMA:-$BUILDDIR/vma}
D=$SRCDIR/tests/data

python3 - "$T/disk.raw" <<'PY'
import random, sys
rnd = random.Random(11)
with open(sys.argv[1], "wb") as f:
    f.truncate(48 * 1024 * 1024 + 3 * 4096)
    for _ in range(30):
        f.seek(rnd.randrange(0, 48 * 1024 * 1024) // 4096 * 4096)
        f.write(bytes(rnd.randrange(256) for _ in range(4096)) * rnd.randrange(1, 40))
PY
"$VMA" create "$T/a.vma" -d format=raw:drive-scsi0="$D/a.raw" \
    -d format=raw:drive-scsi1="$T/disk.raw" || fail "vma create"

# a writable open is refused at startup, with the option named
rc=0
"$VMAD" --blockdev "driver=vma,node-name=arch0,filename=$T/a.vma,device=drive-scsi1,read-only=off" \
    >"$T/ro.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "Block node is read-only" "$T/ro.log" ||
    fail "read-only=off: rc $rc: $(cat "$T/ro.log")"

start_vmad --blockdev "driver=vma,node-name=arch0,filename=$T/a.vma,device=drive-scsi1" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=arch0,name=drive-scsi1" \
    --monitor "$T/qmp.sock"
wait_socket "$T/qmp.sock"
uri="nbd+unix:///drive-scsi1?socket=$T/nbd.sock"
qemu-img convert -f raw -O raw "$uri" "$T/out.raw" || fail "qemu-img convert"
cmp "$T/out.raw" "$T/disk.raw" || fail "qemu-img convert differs from the source"
nbdcopy "$uri" "$T/copy.raw" && cmp "$T/copy.raw" "$T/disk.raw" || fail "nbdcopy"
qemu-io -r -f raw -c "read -P 0 $((48 * 1024 * 1024)) 12288" "$uri" | grep -q "read 12288/12288" ||
    fail "qemu-io -r: the zero tail"

py "$T" "$D" <<'PY' || fail "QMP"
import sys
from qmp import QMP, expect_error
T, D = sys.argv[1], sys.argv[2]
q = QMP(T + "/qmp.sock")
q.negotiate()
blocks = q.ok("query-block")
info = [b for b in blocks if b["device"] == "arch0"][0]
assert info["inserted"]["drv"] == "vma", info
assert info["inserted"]["ro"] is True, info
assert info["inserted"]["file"] == T + "/a.vma", info

r = q.cmd("block-export-add", {"type": "nbd", "id": "e1", "node-name": "arch0",
                               "name": "w", "writable": True})
assert "error" in r, r
r = q.cmd("blockdev-add", {"driver": "vma", "node-name": "x1", "filename": T + "/a.vma",
                           "device": "drive-virtio9"})
expect_error(r, "GenericError")
assert "no device drive-virtio9 (its devices: drive-scsi0, drive-scsi1)" in r["error"]["desc"], r
r = q.cmd("blockdev-add", {"driver": "vma", "node-name": "x2", "filename": T + "/a.vma",
                           "device": "drive-scsi0", "read-only": False})
assert "Block node is read-only" in r["error"]["desc"], r
r = q.cmd("blockdev-add", {"driver": "vma", "node-name": "x3",
                           "filename": D + "/ref-2dev.vma.zst", "device": "drive-scsi0"})
assert "decompress it first (zstd -d" in r["error"]["desc"], r
# a second archive node over QMP, the fixture's device
q.ok("blockdev-add", {"driver": "vma", "node-name": "fix0", "filename": D + "/ref-2dev.vma",
                      "device": "drive-efidisk0"})
q.ok("block-export-add", {"type": "nbd", "id": "e2", "node-name": "fix0", "name": "efi"})
PY
cmp <(nbdcopy "nbd+unix:///efi?socket=$T/nbd.sock" - ) "$D/b.raw" || fail "efi export"
py "$T" <<'PY' || fail "QMP del"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock")
q.negotiate()
q.ok("block-export-del", {"id": "e2"})
import time
for _ in range(100):
    if "error" not in q.cmd("blockdev-del", {"node-name": "fix0"}):
        break
    time.sleep(0.05)
else:
    raise SystemExit("blockdev-del fix0 kept failing")
PY
kill -TERM "$VMAD_PID"
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit $VMAD_RC"
check_log
echo "PASS"
