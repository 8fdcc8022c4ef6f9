# tests/cli/fixtures.bash — what the fixtures-*.sh tests share (sourced): tests/cli/lib.bash,
# D (the archives of the deployed Proxmox tool, tests/data), want_2dev (the recorded
# `vma list` lines of ref-2dev.vma, tests/data/README.md) and extract_check.
. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

D=$TESTDATA
CTIME="CTIME: Thu Nov 26 21:40:36 2026"
want_2dev="CFG: size: 99 name: qemu-server.conf
CFG: size: 20 name: qemu-server.fw
DEV: dev_id=1 size: 1050112 devname: drive-scsi0
DEV: dev_id=2 size: 540672 devname: drive-efidisk0
$CTIME"

extract_check() { # NAME: $T/$NAME holds an extraction of a ref-2dev archive
    local x=$T/$1
    cmp "$x/disk-drive-scsi0.raw" "$D/a.raw" || fail "$1: drive-scsi0 differs"
    cmp "$x/disk-drive-efidisk0.raw" "$D/b.raw" || fail "$1: drive-efidisk0 differs"
    cmp "$x/qemu-server.conf" "$D/qemu-server.conf" || fail "$1: config differs"
    cmp "$x/qemu-server.fw" "$D/qemu-server.fw" || fail "$1: firewall config differs"
    is_sparse "$x/disk-drive-efidisk0.raw" || fail "$1: disk-drive-efidisk0.raw is not sparse"
    [ -z "$(find "$x" -name 'tmp-*')" ] || fail "$1: tmp files left"
    [ "$(find "$x" -type f | wc -l)" -eq 4 ] || fail "$1: unexpected files: $(ls "$x")"
}
