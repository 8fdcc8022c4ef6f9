#!/usr/bin/env bash
# `vma extract` of the archives written by the deployed Proxmox tool (tests/data):
# bit-identical disks and configs, sparse, from files and stdin, plain and compressed;
# the DEVINFO lines; several extents, a tiny disk, a vmstate, a diskless archive.
. "$(dirname "$0")/fixtures.bash"

for f in ref-2dev.vma ref-2dev.vma.gz ref-2dev.vma.lzo ref-2dev.vma.zst; do
    expect_ok extract "$D/$f" "$T/x-$f"
    [ "$out" = "DEVINFO $T/x-$f/tmp-disk-drive-scsi0.raw 1050112
DEVINFO $T/x-$f/tmp-disk-drive-efidisk0.raw 540672" ] || fail "extract $f stdout: $out"
    extract_check "x-$f"
    cat "$D/$f" | "$VMA" extract - "$T/s-$f" >/dev/null || fail "cat $f | vma extract -"
    extract_check "s-$f"
done

expect_ok extract "$D/ref-multiextent.vma" "$T/multi"
cmp "$T/multi/disk-drive-virtio0.raw" "$D/c.raw" || fail "c.raw differs"
expect_ok extract "$D/tiny.vma" "$T/tiny"
cmp "$T/tiny/disk-drive-scsi0.raw" "$D/tiny.raw" || fail "tiny.raw differs"
expect_ok extract "$D/vms.vma" "$T/vms"
cmp "$T/vms/vmstate.bin" "$D/vmstate.raw" || fail "vmstate.bin differs (zero block in place)"
[ -z "$out" ] || fail "vmstate extraction printed DEVINFO: $out"
expect_ok extract "$D/ref-nodisk.vma" "$T/nodisk"
[ "$(ls "$T/nodisk")" = "qemu-server.conf" ] || fail "nodisk: $(ls "$T/nodisk")"
exit 0
