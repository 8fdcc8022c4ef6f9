# tests/functional/nbd-nbdinfo.bash — the server of the nbd-nbdinfo-*.sh tests (sourced):
# tests/functional/lib.bash, then an NBD server with export sp (sparse.raw, 16 MiB,
# writable: data at 1 MiB..1.5 MiB and 8 MiB..8 MiB+64 KiB, holes elsewhere) and export ro
# (ro.raw, 8 MiB, read-only).
. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
requires nbdinfo

truncate -s 16M "$T/sparse.raw"
dd if=/dev/urandom of="$T/sparse.raw" bs=64K seek=16 count=8 conv=notrunc status=none
dd if=/dev/urandom of="$T/sparse.raw" bs=64K seek=128 count=1 conv=notrunc status=none
truncate -s 8M "$T/ro.raw"
start_server --blockdev sp,"$T/sparse.raw" --blockdev ro,"$T/ro.raw",ro \
    --export sp,writable --export ro
