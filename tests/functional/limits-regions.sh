#!/usr/bin/env bash
# The reader's region limit (docs/security.md, "Limits"): an archive whose zero clusters
# touch a new 256 MiB region with every 8-byte entry stops at the limit of 2^20 regions,
# and memory stays bounded (not 75 times the input, as it would be without the limit).
. "$(dirname "$0")/limits.bash"

python3 - "$T/scatter.vma" "$SRCDIR/tests/cli" <<'EOF' || fail "crafting scatter.vma"
import hashlib, struct, sys
sys.path.insert(0, sys.argv[2])
import mkvma
# four devices of 256 TiB; zero clusters (mask 0), each in a 256 MiB region of its own:
# 4 * 2^20 entries, 36 MiB of stream, four times the reader's region limit
spec = {"devices": [{"name": "drive-scsi%d" % i, "size": 1 << 48, "emit": False}
                    for i in range(4)]}
out = bytearray(mkvma.build(spec))
uuid = bytes.fromhex("0123456789abcdef0123456789abcdef")
head = b"VMAE" + bytes(4) + uuid
vals = [((1 + (k >> 20)) << 32) | ((k & 0xfffff) * 4096) for k in range(4 << 20)]
for start in range(0, len(vals), 59):
    group = vals[start:start + 59]
    group += [0] * (59 - len(group))
    eh = head + bytes(16) + struct.pack(">59Q", *group)
    eh = eh[:24] + hashlib.md5(eh).digest() + eh[40:]
    out += eh
open(sys.argv[1], "wb").write(out)
EOF
read -r rc kib < <(peak_kib "$VMA" verify "$T/scatter.vma")
[ "$rc" = 1 ] || fail "verify of scatter.vma exited $rc: $(cat "$T/cmd.out")"
echo "verify scatter.vma ($(stat -c %s "$T/scatter.vma") bytes): peak $((kib / 1024)) MiB"
grep -q 'clusters spread over more than 1048576 regions of 256 MiB' "$T/cmd.out" ||
    fail "verify of scatter.vma: $(cat "$T/cmd.out")"
if [ $plain_build = 1 ] && [ "$kib" -gt $((900 * 1024)) ]; then
    fail "verify of scatter.vma peaked at $((kib / 1024)) MiB"
fi
echo PASS
