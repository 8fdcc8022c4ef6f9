# tests/functional/vma-backup-vmad.bash — the setup of the vma-backup-vmad-*.sh tests
# (sourced): qmp-lib.bash, then vmad on $S ($T/qmp.sock) with three disks: drive-scsi0
# ($T/a.raw, 32 MiB: 8 MiB of random data at 4 MiB and a tail), drive-scsi1 ($T/b.raw,
# 3 MiB + 512 bytes, not a multiple of the 64 KiB cluster) and ro0 (read-only, not in a
# default backup); $T/qemu-server.conf, $T/fw, an empty $T/cwd. The disks are static (no
# writer), so every extracted disk must equal its image. Helpers: bk (vma backup: rc,
# $T/out, $T/err), expect_rc, expect_err, check_extract, list_uuid; INFO_RE matches a
# vzdump-style progress line.
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
requires cmp

VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built (make)"

BK=

S=$T/qmp.sock
MIB=$((1024 * 1024))
UNIT='(B|KiB|MiB|GiB|TiB|PiB)'
SIZE1="[0-9]+\\.[0-9] $UNIT"
RATE="([0-9]+\\.[0-9] $UNIT|0 B)/s"
INFO_RE="^INFO: +[0-9]{1,3}% \\($SIZE1 of $SIZE1\\) in [0-9]+[wdhms]( [0-9]+[wdhms])*, read: $RATE, write: $RATE\$"

# Disks: a has 8 MiB of random data and a tail; b is small and not a multiple of the
# 64 KiB cluster; ro is read-only (not in a default backup).
mkdir "$T/cwd"
truncate -s 32M "$T/a.raw"
head -c 8M /dev/urandom | dd of="$T/a.raw" bs=1M seek=4 conv=notrunc status=none
printf 'end of disk a' | dd of="$T/a.raw" bs=1 seek=$((32 * MIB - 13)) conv=notrunc status=none
truncate -s $((3 * MIB + 512)) "$T/b.raw"
printf 'disk b' | dd of="$T/b.raw" bs=1 seek=$((2 * MIB)) conv=notrunc status=none
truncate -s 1M "$T/ro.raw"
printf 'name: vm1\nmemory: 512\n' >"$T/qemu-server.conf"
printf '[OPTIONS]\nenable: 1\n' >"$T/fw"

start_vmad --monitor "$S" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/b.raw" \
    --blockdev "driver=file,node-name=ro0,filename=$T/ro.raw,read-only=on"
wait_socket "$S"

# bk ARGS...: run vma backup; rc, $T/out, $T/err
bk() {
    "$VMA" backup "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
expect_rc() {
    [ "$rc" = "$1" ] || fail "$2: exit $rc, expected $1; stderr: $(cat "$T/err")"
}
expect_err() {
    [ "$(cat "$T/err")" = "$1" ] || fail "stderr: '$(cat "$T/err")', expected '$1'"
}
# check_extract ARCHIVE DIR DEV=IMAGE...: extract; every disk equals its image, no other
check_extract() {
    local a=$1 d=$2 m n
    shift 2
    "$VMA" extract "$a" "$d" >/dev/null 2>"$T/x.err" || fail "extract $a: $(cat "$T/x.err")"
    for m in "$@"; do
        cmp "$d/disk-${m%%=*}.raw" "${m#*=}" || fail "$a: disk ${m%%=*} differs from its image"
    done
    n=$(find "$d" -name 'disk-*.raw' | wc -l)
    [ "$n" = $# ] || fail "$a: $n disks extracted, expected $#"
}
list_uuid() {
    "$VMA" list --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'
}
