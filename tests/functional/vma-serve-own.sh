#!/bin/bash
# vma serve of our own archives: random sparse images of odd sizes (vma create), read
# back through the NBD exports with qemu-img compare, nbdcopy and qemu-io -r; nbdinfo
# --map shows exactly the zero 4 KiB blocks of each source as holes; writes are refused.
. "$(dirname "$0")/lib.bash"
. "$SRCDIR/tests/functional/vma-serve-lib.bash"
need_tools qemu-img qemu-io nbdinfo nbdcopy python3

mkimage "$T/d0.raw" $((64 * 1024 * 1024 + 4096 * 3 + 512)) 1
mkimage "$T/d1.raw" $((5 * 1024 * 1024 + 65536 * 7)) 2
truncate -s $((32 * 1024 * 1024)) "$T/d2.raw"        # all zero
"$VMA" create "$T/own.vma" -d format=raw:drive-scsi0="$T/d0.raw" \
    -d format=raw:drive-virtio1="$T/d1.raw" -d format=raw:drive-sata2="$T/d2.raw" ||
    fail "vma create"

start_serve "$T/own.vma"
i=0
for dev in drive-scsi0 drive-virtio1 drive-sata2; do
    uri=$(sed -n "$((i + 1))p" "$T/uris")
    [ "$uri" = "nbd+unix:///$dev?socket=$SERVE_SOCK" ] || fail "URI $i: $uri"
    src=$T/d$i.raw
    size=$(stat -c %s "$src")
    [ "$(nbdinfo --size "$uri")" = "$size" ] || fail "$dev: size"
    qemu-img compare -f raw -F raw "$src" "$uri" >/dev/null || fail "$dev differs"
    nbdcopy "$uri" "$T/copy.raw" && cmp "$T/copy.raw" "$src" || fail "$dev: nbdcopy"
    zero_map "$src" "$size" >"$T/want.map"
    nbd_map "$uri" >"$T/got.map"
    diff "$T/want.map" "$T/got.map" || fail "$dev: map"
    # a read across a cluster boundary, compared with the source's bytes
    off=$((65536 * 3 - 1000))
    dd if="$src" of="$T/want.bin" bs=1 skip=$off count=70000 status=none
    qemu-io -r -f raw -c "read -v $off 70000" "$uri" >"$T/qio.out" || fail "$dev: qemu-io"
    python3 - "$T/qio.out" "$T/want.bin" <<'PY' || fail "$dev: qemu-io read differs"
import re, sys
got = bytearray()
for line in open(sys.argv[1]):
    if re.match(r"^[0-9a-f]{8}:  ", line):
        got += bytes.fromhex(line[11:].split("  ")[0])
want = open(sys.argv[2], "rb").read()
sys.exit(0 if bytes(got) == want else 1)
PY
    # writes are refused by the read-only export
    if qemu-io -f raw -c "write 0 4096" "$uri" >"$T/w.out" 2>&1 && ! grep -qi "error\|denied\|read-only\|not permitted" "$T/w.out"; then
        fail "$dev: a write was accepted: $(cat "$T/w.out")"
    fi
    i=$((i + 1))
done
qemu-img convert -f raw -O raw "$(sed -n 1p "$T/uris")" "$T/conv.raw" || fail "qemu-img convert"
cmp "$T/conv.raw" "$T/d0.raw" || fail "qemu-img convert: differs"
stop_serve
echo "PASS"
