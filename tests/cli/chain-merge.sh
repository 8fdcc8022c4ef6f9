#!/usr/bin/env bash
# `vma merge -o OUT --base ...`: one ordinary full archive of a chain's newest state. Its
# extraction (without any base) equals the newest state; it verifies without --base; it
# lists like a full archive (no chain entry, the newest configs, the same devices); it
# has a new uuid and the newest archive's time; every cluster appears exactly once
# (checked by an independent decoder); -o - writes it to stdout; failures leave no file.
. "$(dirname "$0")/lib.bash"
. "$TESTDIR/chain-lib.bash"

C=$T/c
mkdir "$C"
make_chain "$C" 5 23
gzip -c "$C/inc3.vma" >"$C/inc3.vma.gz"

expect_ok merge -o "$T/m5.vma" --base "$C/inc2.vma" --base "$C/inc4.vma" \
    --base "$C/full.vma" --base "$C/inc3.vma.gz" --base "$C/inc1.vma" "$C/inc5.vma"
[ -z "$out" ] || fail "merge wrote to stdout: $out"
expect_ok verify "$T/m5.vma"
expect_ok extract "$T/m5.vma" "$T/x5" >/dev/null
same_state "$T/x5" 5 "$C"
cmp "$T/x5/qemu-server.conf" "$C/conf5/qemu-server.conf" || fail "merged config"

# lists as a full archive: the newest configs without the chain entry, same devices
expect_ok list "$T/m5.vma"
merged=$out
expect_ok list "$C/inc5.vma"
want=$(printf '%s\n' "$out" | grep -v -e '^CHAIN: ' -e 'name: vmabackup-chain.conf$')
[ "$merged" = "$want" ] || fail "merged listing:
$merged
want:
$want"
u=$(uuid_of "$T/m5.vma")
for a in full inc1 inc2 inc3 inc4 inc5; do
    [ "$u" != "$(uuid_of "$C/$a.vma")" ] || fail "merged archive reuses the uuid of $a"
done

# an independent decoder: MD5s, every cluster of every device exactly once
python3 - "$T/m5.vma" <<'PY' || fail "merged archive is not a complete full archive"
import hashlib, struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:4] == b"VMA\0"
hs = struct.unpack(">I", b[56:60])[0]
h = bytearray(b[:hs]); h[32:48] = bytes(16)
assert hashlib.md5(h).digest() == b[32:48], "header md5"
boff = struct.unpack(">I", b[48:52])[0]
names = {}
for i in range(1, 255):
    ptr, _, size = struct.unpack(">IIQ", b[4096 + 32 * i:4096 + 32 * i + 16])
    if size:
        n = struct.unpack("<H", b[boff + ptr:boff + ptr + 2])[0]
        names[i] = (b[boff + ptr + 2:boff + ptr + 2 + n].rstrip(b"\0").decode(), size)
seen = {i: set() for i in names}
pos = hs
while pos < len(b):
    e = bytearray(b[pos:pos + 512])
    assert e[:4] == b"VMAE"
    md5 = bytes(e[24:40]); e[24:40] = bytes(16)
    assert hashlib.md5(e).digest() == md5, "extent md5"
    blocks = 0
    for s in range(59):
        bi = struct.unpack(">Q", e[40 + 8 * s:48 + 8 * s])[0]
        dev, mask, cl = (bi >> 32) & 0xff, bi >> 48, bi & 0xffffffff
        if dev == 0:
            continue
        assert cl not in seen[dev], "duplicate cluster"
        seen[dev].add(cl)
        blocks += bin(mask).count("1")
    assert blocks == struct.unpack(">H", e[6:8])[0]
    pos += 512 + blocks * 4096
for i, (name, size) in names.items():
    assert seen[i] == set(range((size + 65535) // 65536)), "clusters of " + name
PY

# a differential chain; the output to stdout
out=$("$VMA" merge -o - --base "$C/full.vma" "$C/diff3.vma" 2>"$T/err" | "$VMA" extract - "$T/x3" 2>&1) ||
    fail "merge -o - | extract -: $(cat "$T/err") $out"
same_state "$T/x3" 3 "$C"

# errors: no base; an existing output; no -o
expect_fail "needs its base $(uuid_of "$C/inc1.vma")" merge -o "$T/bad.vma" --base "$C/full.vma" "$C/inc2.vma"
[ ! -e "$T/bad.vma" ] || fail "a failed merge left its output"
[ -z "$(ls -A "$T" | grep -e '\.tmp' || true)" ] || fail "a failed merge left a temporary file"
expect_fail "exists" merge -o "$T/m5.vma" --base "$C/full.vma" "$C/inc1.vma"
expect_usage merge --base "$C/full.vma" "$C/inc1.vma"
exit 0
