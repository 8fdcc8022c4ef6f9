# tests/functional/qmp-backup.bash — the setup of the qmp-backup-*.sh tests (sourced):
# tests/lib.bash through qmp-lib.bash, then vmad with two disks of random content,
# drive-scsi0 ($T/a.raw, 16 MiB) and drive-scsi1 ($T/b.raw, 3 clusters + 4.5 KiB), both
# exported writable on $T/nbd.sock, the monitor on $T/qmp.sock, --fleecing-dir $T/fleece
# and --backup-buffer-size 256K (a slow target makes old data spill); an empty $T/out,
# and $T/vm.conf, $T/vm.fw for config-file and firewall-file. The tests drive it with
# tests/functional/qmpbackup.py.
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
requires qemu-io
[ -x "$VMA" ] || fail "vma not built"

mkdir "$T/fleece" "$T/out"
python3 - "$T" <<'PYEOF' || fail "creating images"
import os, sys
T = sys.argv[1]
for name, size in (("a", 16 << 20), ("b", 65536 * 3 + 4096 + 512)):
    with open("%s/%s.raw" % (T, name), "wb") as f:
        f.write(os.urandom(size))
PYEOF
printf 'memory: 512\nname: test\n' >"$T/vm.conf"
printf '[OPTIONS]\nenable: 1\n' >"$T/vm.fw"

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/b.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on" \
    --export "nbd,id=e1,node-name=drive-scsi1,writable=on" \
    --fleecing-dir "$T/fleece" --backup-buffer-size 256K
