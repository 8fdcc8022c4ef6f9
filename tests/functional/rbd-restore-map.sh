#!/usr/bin/env bash
# vma extract -r into Ceph RBD images named as Proxmox writes them into its map
# (rbd:POOL/IMAGE:conf=FILE[:id=USER]), on a one-node cluster this test starts
# (tests/functional/ceph.bash): the archive's disks go through qemu-nbd with QEMU's rbd
# driver, write-zeros 1 over an image full of old data and 0 into a new image; qemu-img
# compare of each rbd: image with the source finds them equal. A missing image is an error
# before anything is written: the other target keeps its old data.
. "$(dirname "$0")/qmp-lib.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-img qemu-io qemu-nbd
requires_qemu_rbd
[ -x "$VMA" ] || fail "vma not built"
MiB=1048576

python3 - "$T" <<'EOF'
import os, random, sys
d = sys.argv[1]
rnd = random.Random(7)
a = bytearray(6 * 1024 * 1024)          # data, zero clusters, data across an object boundary
a[0:65536] = rnd.randbytes(65536)
a[(4 << 20) - 4096:(4 << 20) + 8192] = rnd.randbytes(12288)
open(os.path.join(d, "a.raw"), "wb").write(a)
open(os.path.join(d, "b.raw"), "wb").write(rnd.randbytes(300000))
EOF
"$VMA" create "$T/src.vma" -d format=raw:drive-scsi0="$T/a.raw" \
    -d format=raw:drive-scsi1="$T/b.raw" || fail "vma create"

ceph_start
rbd_cli create --size 6M old || fail "rbd create old"
rbd_cli create --size 1M new || fail "rbd create new"
qemu-io -f raw -c "write -P 0xff 0 6M" "$(rbd_uri old)" >/dev/null || fail "fill old"

run_map() { # DIR MAP-TEXT
    local fifo=$T/fifo.$RANDOM
    mkfifo "$fifo"
    "$VMA" extract -r "$fifo" "$T/src.vma" "$1" >"$T/map.out" 2>"$T/map.err" &
    local pid=$!
    cleanup_pid "$pid"
    with_timeout 60 bash -c 'printf "%s" "$1" >"$2"' _ "$2" "$fifo" 2>/dev/null
    wait "$pid"
    rc=$?
    err=$(cat "$T/map.err")
}

# a missing image: refused before the other target is written
run_map "$T/x0" "format=raw:1:drive-scsi0=$(rbd_uri old)
0:drive-scsi1=$(rbd_uri nosuch)
"
[ "$rc" -eq 1 ] || fail "missing rbd image: exit $rc: $err"
case $err in *"No such file or directory"*) ;; *) fail "missing rbd image: $err" ;; esac
qemu-io -f raw -r -c "read -P 0xff 0 6M" "$(rbd_uri old)" >/dev/null ||
    fail "the refused restore wrote into the other target"

run_map "$T/x1" "format=raw:1:drive-scsi0=$(rbd_uri old):id=admin
throttling.bps=104857600:throttling.group=local:0:drive-scsi1=$(rbd_uri new)
"
[ "$rc" -eq 0 ] || fail "restore into rbd: exit $rc: $err"
out=$(qemu-img compare -f raw -F raw "$T/a.raw" "$(rbd_uri old)" 2>&1) ||
    fail "rbd image old differs from a.raw: $out"
truncate -s 1M "$T/b1.raw"
dd if="$T/b.raw" of="$T/b1.raw" conv=notrunc status=none
out=$(qemu-img compare -f raw -F raw "$T/b1.raw" "$(rbd_uri new)" 2>&1) ||
    fail "rbd image new differs from b.raw: $out"
echo "PASS (ceph up in $CEPH_UP_SECS s)"
