#!/usr/bin/env bash
# vma create → vma extract gives back every image bit for bit: random, zero-heavy,
# sparse and odd-sized images, several devices in one archive, the -d and legacy forms,
# exec: targets, configs, vmstate; and create refuses what it must refuse.
. "$(dirname "$0")/lib.bash"

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

# ---- several devices, -d form, two configs ----------------------------------------------
expect_ok create -c "$I/qemu-server.conf" -c "$I/qemu-server.fw" "$T/a.vma" \
    -d format=raw:drive-scsi0="$I/random.raw" -d format=raw:drive-scsi1="$I/zeroes.raw" \
    -d format=raw:drive-scsi2="$I/sparse.raw" -d format=raw:drive-sata0="$I/odd-1.raw" \
    -d format=raw:drive-sata1="$I/odd-511.raw" -d format=raw:drive-sata2="$I/odd-4097.raw" \
    -d format=raw:drive-sata3="$I/odd-65535.raw" -d format=raw:drive-sata4="$I/odd-65537.raw"
[ -z "$out" ] || fail "create printed: $out"
expect_ok verify "$T/a.vma"
expect_ok list "$T/a.vma"
printf '%s\n' "$out" | grep -qx "DEV: dev_id=3 size: 16777216 devname: drive-scsi2" ||
    fail "list: $out"
printf '%s\n' "$out" | grep -qx "CFG: size: 20 name: qemu-server.fw" || fail "list: $out"
expect_ok extract "$T/a.vma" "$T/a"
cmp "$T/a/disk-drive-scsi0.raw" "$I/random.raw" || fail "random.raw"
cmp "$T/a/disk-drive-scsi1.raw" "$I/zeroes.raw" || fail "zeroes.raw"
cmp "$T/a/disk-drive-scsi2.raw" "$I/sparse.raw" || fail "sparse.raw"
cmp "$T/a/disk-drive-sata0.raw" "$I/odd-1.raw" || fail "odd-1"
cmp "$T/a/disk-drive-sata1.raw" "$I/odd-511.raw" || fail "odd-511"
cmp "$T/a/disk-drive-sata2.raw" "$I/odd-4097.raw" || fail "odd-4097"
cmp "$T/a/disk-drive-sata3.raw" "$I/odd-65535.raw" || fail "odd-65535"
cmp "$T/a/disk-drive-sata4.raw" "$I/odd-65537.raw" || fail "odd-65537"
cmp "$T/a/qemu-server.fw" "$I/qemu-server.fw" || fail "config qemu-server.fw"
is_sparse "$T/a/disk-drive-scsi2.raw" || fail "extracted sparse image is not sparse"
# the sparse source is mostly holes: the archive must be much smaller than 16 MiB
[ "$(stat -c %s "$T/a.vma")" -lt $((4 * 1024 * 1024)) ] || fail "archive too large"
"$VMA" config "$T/a.vma" | cmp - "$I/qemu-server.conf" || fail "config round trip"
"$VMA" config -c qemu-server.fw "$T/a.vma" | cmp - "$I/qemu-server.fw" || fail "fw round trip"

# ---- legacy positional form, default names, vmstate, -v -------------------------------
expect_ok create -c "$I/qemu-server.conf" "$T/b.vma" "$I/odd-4097.raw" \
    drive-virtio0="$I/random.raw" vmstate="$I/vmstate.raw"
expect_ok list "$T/b.vma"
printf '%s\n' "$out" | grep -qx "DEV: dev_id=1 size: 4097 devname: disk0" || fail "legacy: $out"
printf '%s\n' "$out" | grep -qx "VMSTATE: dev_id=3 memory: 74196" || fail "vmstate: $out"
expect_ok extract "$T/b.vma" "$T/b"
cmp "$T/b/disk-disk0.raw" "$I/odd-4097.raw" || fail "disk0"
cmp "$T/b/disk-drive-virtio0.raw" "$I/random.raw" || fail "virtio0"
cmp "$T/b/vmstate.bin" "$I/vmstate.raw" || fail "vmstate"

run_vma create -v "$T/c.vma" drive-scsi0="$I/zeroes.raw"
[ "$rc" -eq 0 ] || fail "create -v: $err"
printf '%s\n' "$err" | grep -Eq '^progress 100% 2097152/2097152 [0-9]+$' || fail "create -v: $err"
printf '%s\n' "$err" | grep -Eq '^image drive-scsi0: size=2097152 zeros=[0-9]+ saved=[0-9]+$' ||
    fail "create -v image line: $err"

# ---- exec: target, a config-only archive ------------------------------------------------
expect_ok create -c "$I/qemu-server.conf" "exec:zstd -q >'$T/d.vma.zst'" \
    drive-scsi0="$I/zeroes.raw"
expect_ok extract "$T/d.vma.zst" "$T/d"
cmp "$T/d/disk-drive-scsi0.raw" "$I/zeroes.raw" || fail "exec: round trip"
expect_ok create -c "$I/qemu-server.conf" "exec:cat >'$T/e.vma'"
expect_ok verify "$T/e.vma"
"$VMA" config "$T/e.vma" | cmp - "$I/qemu-server.conf" || fail "diskless config"

# ---- refusals: nothing left behind --------------------------------------------------------
: >"$I/empty.raw"
expect_fail "image $I/empty.raw: size is 0" create "$T/f.vma" drive-scsi0="$I/empty.raw"
[ ! -e "$T/f.vma" ] || fail "refused create left an archive"
expect_fail "exists" create "$T/a.vma" drive-scsi0="$I/odd-1.raw"
expect_fail "No such file" create "$T/f.vma" drive-scsi0="$I/missing.raw"
[ ! -e "$T/f.vma" ] || fail "refused create left an archive"
expect_fail "device name" create "$T/f.vma" ../evil="$I/odd-1.raw"
expect_fail "device name" create "$T/f.vma" .hidden="$I/odd-1.raw"
expect_fail "given twice" create "$T/f.vma" x="$I/odd-1.raw" x="$I/odd-511.raw"
head -c 70000 /dev/zero >"$I/big.conf"
expect_fail "too large" create -c "$I/big.conf" "$T/f.vma"
expect_usage create "$T/f.vma" -d drive-scsi0="$I/odd-1.raw"
expect_usage create "$T/f.vma" -d format=qcow2:drive-scsi0="$I/odd-1.raw"
expect_usage create "$T/f.vma" -d format=raw:a="$I/odd-1.raw" b="$I/odd-1.raw"
expect_usage create
[ ! -e "$T/f.vma" ] || fail "refused create left an archive"
# a command that fails: the archive is not kept and the status says so
run_vma create "exec:exit 3" drive-scsi0="$I/zeroes.raw"
[ "$rc" -eq 1 ] || fail "create to a failing exec: exited $rc"
exit 0
