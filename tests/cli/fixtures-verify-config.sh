#!/usr/bin/env bash
# verify and config of the archives written by the deployed Proxmox tool (tests/data):
# verify is silent, from files and stdin; config gives the stored files byte for byte,
# with the option before or after the operand; an unknown config name is an error.
. "$(dirname "$0")/fixtures.bash"

for f in ref-2dev.vma ref-2dev.vma.gz ref-2dev.vma.lzo ref-2dev.vma.zst ref-multiextent.vma \
    ref-nodisk.vma tiny.vma vms.vma; do
    expect_ok verify "$D/$f"
    [ -z "$out" ] || fail "verify $f printed: $out"
    "$VMA" verify - <"$D/$f" || fail "verify - <$f"
    expect_ok config "$D/$f"
    [ "$out" = "$(cat "$D/qemu-server.conf")" ] || fail "config $f differs"
done
"$VMA" config "$D/ref-2dev.vma" | cmp - "$D/qemu-server.conf" || fail "config bytes differ"
"$VMA" config -c qemu-server.fw "$D/ref-2dev.vma" | cmp - "$D/qemu-server.fw" ||
    fail "config -c qemu-server.fw differs"
# option after the operand, as the deployed getopt allows
"$VMA" config "$D/ref-2dev.vma" -c qemu-server.fw | cmp - "$D/qemu-server.fw" ||
    fail "config ARCHIVE -c NAME"
zstd -q -d -c "$D/ref-2dev.vma.zst" | "$VMA" config - | cmp - "$D/qemu-server.conf" ||
    fail "zstd | vma config -"
expect_fail "no config named 'nope'" config -c nope "$D/ref-2dev.vma"
exit 0
