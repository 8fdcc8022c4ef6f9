#!/usr/bin/env bash
# The Ceph cluster goes away in the middle of a live backup of an RBD disk and a file
# disk. The cluster (tests/functional/ceph.bash) gives its clients a 5 s operation
# timeout (rados osd/mon op timeout), so librbd answers the backup's reads of the RBD
# disk with ETIMEDOUT once the daemons are killed. Checked: the backup fails with
# status error and librbd's reason (strerror of its result) in query-backup's errmsg;
# the partial archive is removed; vmad goes on serving the file disk over NBD (qemu-io
# writes and reads back), a backup of the file disk alone succeeds and verifies, an
# rbd disk on the dead cluster cannot be added (connect timeout); and vmad quits cleanly
# (status 0, clean log) although its RBD node's cluster is gone.
CEPH_CLIENT_TIMEOUT=5
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-io qemu-img
[ -x "$VMA" ] || fail "vma not built"

ceph_start
MiB=1048576
rbd_cli create --size 32M img --image-feature layering || fail "rbd create"
qemu-io -f raw -c "write -P 0x3c 0 32M" "$(rbd_uri img)" >/dev/null || fail "fill the image"
truncate -s $((8 * MiB)) "$T/d1.raw"
qemu-io -f raw -c "write -P 0x4d 0 8M" "$T/d1.raw" >/dev/null || fail "fill the file disk"
printf 'memory: 512\nname: stop\n' >"$T/vm.conf"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=rbd,node-name=drive-scsi0,pool=rbd,image=img,conf=$CEPH_CONF" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on"
U1="nbd+unix:///drive-scsi1?socket=$T/nbd.sock"

# A slow backup (4 MiB/s over 40 MiB: about 10 s), the RBD disk first.
py "$T/qmp.sock" "$T/out.vma" "$T/vm.conf" >"$T/started" <<'EOF' || fail "start the backup"
import sys, time
from qmp import QMP
q = QMP(sys.argv[1]); q.negotiate()
q.ok("backup", {"backup-file": sys.argv[2], "config-file": sys.argv[3], "speed": 4 << 20,
                "devlist": "drive-scsi0,drive-scsi1"})
for _ in range(200):
    st = q.ok("query-backup")
    if st.get("transferred", 0) > 0:
        break
    time.sleep(0.02)
print(st["status"], st.get("transferred", 0))
EOF
read -r status transferred <"$T/started"
[ "$status" = active ] || fail "the backup is $status before the cluster stops"
t0=$(date +%s)
ceph_stop
echo "cluster killed at transferred=$transferred"

py "$T/qmp.sock" "$T/out.vma" <<'EOF' || fail "the backup did not fail as expected"
import os, sys, time
from qmp import QMP
from pitlib import wait_backup
q = QMP(sys.argv[1], timeout=90); q.negotiate()
st = wait_backup(q, timeout=90)
print("backup:", st["status"], st.get("errmsg"))
assert st["status"] == "error", st
msg = st["errmsg"]
assert "drive-scsi0" in msg and os.strerror(110) in msg, msg   # ETIMEDOUT
assert not os.path.exists(sys.argv[2]), "the partial archive was left behind"
EOF
echo "backup failed after $(($(date +%s) - t0)) s"

# vmad goes on: the file disk over NBD, a backup of it, and no new rbd disk.
out=$(qemu-io -f raw -c "write -P 0x5e 1M 1M" -c "read -P 0x5e 1M 1M" -c "read -P 0x4d 0 1M" \
    "$U1" 2>&1) || fail "the file disk after the cluster went away: $out"
py "$T/qmp.sock" "$T/file.vma" "$CEPH_CONF" <<'EOF' || fail "vmad after the cluster went away"
import sys
from qmp import QMP
from pitlib import wait_backup
q = QMP(sys.argv[1], timeout=60); q.negotiate()
q.ok("backup", {"backup-file": sys.argv[2], "devlist": "drive-scsi1"})
st = wait_backup(q)
assert st["status"] == "done", st
r = q.cmd("blockdev-add", {"driver": "rbd", "node-name": "late", "pool": "rbd",
                           "image": "img", "conf": sys.argv[3]})
assert "error" in r, r
print("refused:", r["error"]["desc"])
assert "connect to the cluster" in r["error"]["desc"], r
EOF
"$VMA" verify "$T/file.vma" >/dev/null || fail "vma verify of the file disk's backup"
t1=$(date +%s)
quit_vmad 90
echo "vmad quit in $(($(date +%s) - t1)) s with the cluster gone"
echo PASS
