# tests/functional/faults-backup.bash — the setup of the faults-backup-*.sh tests
# (sourced): qmp-lib.bash and faults-lib.bash, the images a.raw (8 MiB), c.raw (2 MiB),
# e.raw (4 MiB), f.raw (1 MiB) of random data, empty $T/fleece and $T/out, RULES (the
# faults of the error scenarios, below) and vmad_args. A test starts vmad itself:
#   faulty "$RULES" start_vmad $(vmad_args)
# and drives it with tests/functional/faultsbackup.py.
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
. "$(dirname "${BASH_SOURCE[0]}")/faults-lib.bash"
requires qemu-io
export VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built"

mkdir "$T/fleece" "$T/out"
python3 - "$T" <<'EOF' || fail "creating images"
import os, sys
T = sys.argv[1]
for name, size in (("a", 8 << 20), ("c", 2 << 20), ("e", 4 << 20), ("f", 1 << 20)):
    with open("%s/%s.raw" % (T, name), "wb") as f:
        f.write(os.urandom(size))
EOF

# Which calls fail (the file names of the backups choose the case; a new archive is
# written as .NAME.tmp-XXXXXX until it is complete, so that is the name the rules see):
#   enospc-*.vma  writes fail with ENOSPC after the header and one extent
#   eio-*.vma     writes fail with EIO after the header
#   sync-*.vma    the flush at the end fails
#   c.raw         the first read by a background copy thread fails
#   e.raw         the first read by an NBD thread (a copy-before-write) fails
#   f.raw         every flush fails (FUA writes and FLUSH)
#   fleece/       writes of the fleecing file fail with ENOSPC, while $T/arm-fleece exists
#                 (spilling works in the other cases, which spill when the target is slow)
RULES="op=writev,path=*/out/.enospc-*.vma.tmp-*,after=2,err=ENOSPC"
RULES+=";op=writev,path=*/out/.eio-*.vma.tmp-*,after=1,err=EIO"
RULES+=";op=fdatasync,path=*/out/.sync-*.vma.tmp-*,err=EIO"
RULES+=";op=pread|preadv,path=*/c.raw,thread=backup-copy,count=1,err=EIO"
RULES+=";op=pread|preadv,path=*/e.raw,thread=nbd-*,count=1,err=EIO"
RULES+=";op=fdatasync,path=*/f.raw,err=EIO"
RULES+=";op=pwrite,path=*/fleece/*,if=$T/arm-fleece,err=ENOSPC"

# vmad_args: vmad's arguments (the disks, their exports, the sockets in $T)
vmad_args() {
    echo --monitor "$T/qmp.sock" \
        --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
        --blockdev "driver=file,node-name=drive-scsi1,filename=$T/c.raw" \
        --blockdev "driver=file,node-name=drive-scsi2,filename=$T/e.raw" \
        --blockdev "driver=file,node-name=drive-scsi3,filename=$T/f.raw" \
        --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export nbd,id=e0,node-name=drive-scsi0,writable=on \
        --export nbd,id=e1,node-name=drive-scsi1,writable=on \
        --export nbd,id=e2,node-name=drive-scsi2,writable=on \
        --export nbd,id=e3,node-name=drive-scsi3,writable=on \
        --fleecing-dir "$T/fleece" --backup-buffer-size 256K --pidfile "$T/vmad.pid"
}
