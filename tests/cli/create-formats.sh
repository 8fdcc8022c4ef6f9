#!/usr/bin/env bash
# vma create from images in QEMU formats (read through a private qemu-nbd): a qcow2 image
# with a raw backing file (some clusters its own, some the backing file's, a zero cluster
# over backing data), the same as vmdk, and a plain qcow2; given with -d format=FMT:,
# with -d and no format (probed) and as legacy operands (probed). `vma extract` of the
# archive equals `qemu-img convert -O raw` of each image byte for byte, and the sizes are
# the virtual sizes. Unallocated areas are not read: qemu-nbd's own trace of its answers
# to read requests (data and hole chunks, through a wrapper first in PATH) adds up to the
# allocated data of a 256 MiB qcow2 holding 1 MiB, not to its size, and the archive
# stores only that MiB.
. "$(dirname "$0")/lib.bash"
requires qemu-img qemu-io qemu-nbd
MiB=1048576
cd "$T" || fail "cd $T"

qemu-img create -q -f raw base.raw 20M || fail "create base"
qemu-io -f raw -c "write -P 0x11 0 3M" -c "write -P 0x12 10M 1M" -c "write -P 0x13 19M 1M" \
    base.raw >/dev/null || fail "fill base"
qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2 || fail "create top"
qemu-io -f qcow2 -c "write -P 0x21 2M 2M" -c "write -z 10M 512k" -c "write -P 0x22 15M 4k" \
    top.qcow2 >/dev/null || fail "write top"
qemu-img convert -q -O vmdk top.qcow2 d.vmdk || fail "convert to vmdk"
# an odd virtual size: the last cluster is partial
qemu-img create -q -f qcow2 odd.qcow2 $((5 * MiB + 4608)) || fail "create odd"
qemu-io -f qcow2 -c "write -P 0x31 $((5 * MiB)) 4608" odd.qcow2 >/dev/null || fail "write odd"

check "create -d" "$VMA" create a.vma -d format=qcow2:drive-scsi0=top.qcow2 \
    -d format=vmdk:drive-scsi1=d.vmdk -d drive-scsi2=odd.qcow2
check "create legacy" "$VMA" create b.vma top.qcow2 disk-vmdk=d.vmdk
for f in top.qcow2 d.vmdk odd.qcow2; do
    qemu-img convert -q -O raw "$f" "$f.raw" || fail "qemu-img convert $f"
done
check "extract a" "$VMA" extract a.vma xa
check "extract b" "$VMA" extract b.vma xb
cmp xa/disk-drive-scsi0.raw top.qcow2.raw || fail "qcow2 with backing file differs"
cmp xa/disk-drive-scsi1.raw d.vmdk.raw || fail "vmdk differs"
cmp xa/disk-drive-scsi2.raw odd.qcow2.raw || fail "probed qcow2 of odd size differs"
cmp xb/disk-disk0.raw top.qcow2.raw || fail "legacy probed qcow2 differs"
cmp xb/disk-disk-vmdk.raw d.vmdk.raw || fail "legacy probed vmdk differs"
run_vma list a.vma
case $out in
*"size: $((20 * MiB)) devname: drive-scsi0"*"size: $((5 * MiB + 4608)) devname: drive-scsi2"*) ;;
*) fail "virtual sizes not in the listing: $out" ;;
esac

# unallocated areas are not read: count qemu-nbd's reads of its image
mkdir bin
REAL=$(command -v qemu-nbd)
cat >bin/qemu-nbd <<EOF
#!/bin/sh
exec "$REAL" --trace "enable=nbd_co_send_structured_read*,file=$T/trace.\$\$" "\$@"
EOF
chmod +x bin/qemu-nbd
qemu-img create -q -f qcow2 big.qcow2 256M || fail "create big"
qemu-io -f qcow2 -c "write -P 0x41 100M 512k" -c "write -P 0x42 200M 512k" big.qcow2 \
    >/dev/null || fail "write big"
PATH="$T/bin:$PATH" "$VMA" create big.vma -d format=qcow2:drive-scsi0=big.qcow2 ||
    fail "create big through the tracing qemu-nbd"
ls trace.* >/dev/null 2>&1 || fail "the qemu-nbd wrapper left no trace"
# every read request is answered by data and hole chunks: their lengths add up to what
# vma asked to read
read_bytes=$(cat trace.* | sed -n 's/.*nbd_co_send_structured_read.* \(len\|size\) = \([0-9]*\).*/\2/p' |
    awk '{ s += $1 } END { print s + 0 }')
[ "$read_bytes" -ge $((MiB)) ] || fail "qemu-nbd read $read_bytes bytes: the trace does not work"
[ "$read_bytes" -le $((2 * MiB)) ] ||
    fail "qemu-nbd read $read_bytes bytes of a 256 MiB image with 1 MiB allocated"
size=$(stat -c %s big.vma)
[ "$size" -lt $((2 * MiB)) ] || fail "archive of 1 MiB of data is $size bytes"
check "extract big" "$VMA" extract big.vma xbig
qemu-img compare -q -f raw -F qcow2 xbig/disk-drive-scsi0.raw big.qcow2 ||
    fail "big qcow2 restored differs"
exit 0
