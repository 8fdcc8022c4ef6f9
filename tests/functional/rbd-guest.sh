#!/usr/bin/env bash
# A real guest on an RBD disk: vmad opens a Ceph RBD image (driver rbd, one-node cluster
# from tests/functional/ceph.bash) and exports it over NBD; QEMU (TCG) boots the test
# kernel with that export as its virtio disk (tests/functional/guest.bash); the guest
# writes patterns with O_DIRECT into a prefilled region, a never-written region and the
# last block, reads them back and powers off. Then the host reads the image through
# QEMU's rbd driver and checks it byte for byte: the guest's pattern where it wrote,
# the prefill and zeros everywhere else.
. "$(dirname "$0")/guest.bash"
. "$(dirname "$0")/ceph.bash"
requires qemu-img qemu-io
[ -x "$VMAD" ] || fail "$VMAD not built (make test-build)"

guest_prepare
ceph_start
rbd_cli create --size 48M disk || fail "rbd create"
# prefill the first 16 MiB with a known pattern, kept as the expected original
truncate -s 48M "$T/orig.raw"
python3 - "$T/orig.raw" <<'EOF' || fail "make the prefill"
import random, sys
with open(sys.argv[1], "r+b") as f:
    f.write(random.Random(4343).randbytes(16 << 20))
EOF
qemu-img convert -n -f raw -O raw "$T/orig.raw" "$(rbd_uri disk)" || fail "prefill the image"
regions=0:1M,10M:2M,30M:3M,$(((48 << 20) - 4096)):4K

sock=$T/nbd.sock
start_vmad --blockdev "driver=rbd,node-name=drive-scsi0,pool=rbd,image=disk,conf=$CEPH_CONF" \
    --nbd-server "addr.type=unix,addr.path=$sock" \
    --export "type=nbd,id=e0,node-name=drive-scsi0,writable=on"
t0=$SECONDS
guest_boot "$sock" drive-scsi0 write-verify seed=21 regions="$regions" || fail "guest_boot"
res=$(guest_wait "$GUEST_PID")
echo "guest on rbd: $res after $((SECONDS - t0)) s"
[ "$res" = "GUEST-RESULT: ok" ] || fail "guest on an RBD disk: $res"
stop_vmad TERM

qemu-img convert -f raw -O raw "$(rbd_uri disk)" "$T/after.raw" || fail "read the image back"
python3 "$GUEST_CHECK" pattern "$T/after.raw" --seed 21 --disk 0 --regions "$regions" \
    --orig "$T/orig.raw" || fail "the RBD image does not hold what the guest wrote"
echo PASS
