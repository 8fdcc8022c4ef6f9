# tests/cli/roundtrip.bash — the images of the roundtrip-*.sh tests (sourced): tests/cli/lib.bash,
# then in $I: random.raw (3 clusters + 12345 bytes), zeroes.raw (2 MiB, random 4 KiB
# blocks between long zero stretches, one byte at the very end), odd-N.raw for N = 1, 511,
# 4097, 65535, 65537, vmstate.raw, sparse.raw (16 MiB, two written islands between holes),
# qemu-server.conf and qemu-server.fw.
. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

I=$T/img
mkdir "$I"
python3 - "$I" <<'EOF'
import os, random, sys
d = sys.argv[1]
rnd = random.Random(1234)
def w(name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
w("random.raw", rnd.randbytes(3 * 65536 + 12345))
# zero-heavy: random 4 KiB blocks between long zero stretches, one byte at the very end
z = bytearray(2 * 1024 * 1024)
for i in range(0, len(z), 7 * 4096):
    z[i:i + 4096] = rnd.randbytes(4096)
z[-1] = 1
w("zeroes.raw", bytes(z))
for n in (1, 511, 4097, 65535, 65537):
    w("odd-%d.raw" % n, rnd.randbytes(n))
w("vmstate.raw", rnd.randbytes(70000) + bytes(4096) + rnd.randbytes(100))
EOF
# sparse: a 16 MiB file with two written islands and holes around them
truncate -s 16M "$I/sparse.raw"
printf 'island one' | dd of="$I/sparse.raw" bs=1 seek=$((3 * 1024 * 1024 + 17)) conv=notrunc status=none
head -c 200000 "$I/random.raw" | dd of="$I/sparse.raw" bs=4096 seek=3000 conv=notrunc status=none
printf 'conf: 1\n' >"$I/qemu-server.conf"
printf '[OPTIONS]\nenable: 1\n' >"$I/qemu-server.fw"
