# tests/functional/backup-status.bash — the setup of the backup-status-*.sh tests
# (sourced): qmp-lib.bash, then vmad on $T/qmp.sock with drive-scsi0 ($T/d0.raw, 2 MiB +
# 4.5 KiB: random data in about a third of its 4 KiB blocks, written zeros in another
# third, holes elsewhere, data in the partial last block), drive-scsi1 ($T/d1.raw, 1 MiB,
# every 5th block data, the rest a hole) and the read-only drive-ro; $T/vm.conf and an
# empty $T/out. The tests drive it with tests/functional/backupstatus.py.
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
[ -x "$VMA" ] || fail "vma not built"

mkdir "$T/out"
python3 - "$T" <<'EOF' || fail "creating images"
import os, random, sys
T = sys.argv[1]
rnd = random.Random(5)
B = 4096
# d0: 2 MiB + 4.5 KiB; random data in about a third of its 4 KiB blocks, written zeros
# in another third, holes elsewhere; the partial last block holds data
size0 = (2 << 20) + 4096 + 512
with open(T + "/d0.raw", "wb") as f:
    f.truncate(size0)
    for b in range(size0 // B):
        r = rnd.randrange(3)
        if r == 0:
            f.seek(b * B)
            f.write(rnd.randbytes(B) if b % 7 else b"\0" * 4095 + b"\1")
        elif r == 1:
            f.seek(b * B)
            f.write(bytes(B))
    f.seek(size0 - 512)
    f.write(rnd.randbytes(512))
# d1: 1 MiB, every 5th block data, the rest a hole
with open(T + "/d1.raw", "wb") as f:
    f.truncate(1 << 20)
    for b in range(0, 256, 5):
        f.seek(b * B)
        f.write(rnd.randbytes(B))
# ro: a read-only disk is not backed up by default
with open(T + "/ro.raw", "wb") as f:
    f.write(rnd.randbytes(1 << 16))
EOF
printf 'name: status\n' >"$T/vm.conf"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/d1.raw" \
    --blockdev "driver=file,node-name=drive-ro,filename=$T/ro.raw,read-only=on"
wait_socket "$T/qmp.sock"
