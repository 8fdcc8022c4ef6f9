#!/usr/bin/env bash
# Golden tests against the archives written by the deployed Proxmox tool (tests/data):
# exact `vma list` lines, verify, config, and bit-identical extraction from files and
# from stdin, plain and compressed; extracted disks are sparse.
. "$(dirname "$0")/lib.bash"

D=$TESTDATA
CTIME="CTIME: Thu Nov 26 21:40:36 2026"

# ---- list: the recorded lines (tests/data/README.md), exactly -------------------------
want_2dev="CFG: size: 99 name: qemu-server.conf
CFG: size: 20 name: qemu-server.fw
DEV: dev_id=1 size: 1050112 devname: drive-scsi0
DEV: dev_id=2 size: 540672 devname: drive-efidisk0
$CTIME"
for f in ref-2dev.vma ref-2dev.vma.gz ref-2dev.vma.lzo ref-2dev.vma.zst; do
    expect_ok list "$D/$f"
    [ "$out" = "$want_2dev" ] || fail "list $f:
$out"
    out=$("$VMA" list - <"$D/$f") || fail "list - <$f"
    [ "$out" = "$want_2dev" ] || fail "list - <$f: $out"
done

check_list() { # ARCHIVE EXPECTED-LINES (CTIME line compared by prefix only)
    expect_ok list "$D/$1"
    [ "$(printf '%s\n' "$out" | head -n -1)" = "$2" ] || fail "list $1:
$out"
    case "$(printf '%s\n' "$out" | tail -n 1)" in
    "CTIME: "???" "???" "[\ 1-3][0-9]" "[0-2][0-9]:[0-5][0-9]:[0-5][0-9]" "[0-9][0-9][0-9][0-9]) ;;
    *) fail "list $1: bad CTIME line: $out" ;;
    esac
}
check_list ref-multiextent.vma "CFG: size: 99 name: qemu-server.conf
DEV: dev_id=1 size: 8396800 devname: drive-virtio0"
check_list ref-nodisk.vma "CFG: size: 99 name: qemu-server.conf"
check_list tiny.vma "CFG: size: 99 name: qemu-server.conf
DEV: dev_id=1 size: 4096 devname: drive-scsi0"
check_list vms.vma "CFG: size: 99 name: qemu-server.conf
VMSTATE: dev_id=1 memory: 196608"

# ---- verify and config ------------------------------------------------------------------
for f in ref-2dev.vma ref-2dev.vma.gz ref-2dev.vma.lzo ref-2dev.vma.zst ref-multiextent.vma \
    ref-nodisk.vma tiny.vma vms.vma; do
    expect_ok verify "$D/$f"
    [ -z "$out" ] || fail "verify $f printed: $out"
    "$VMA" verify - <"$D/$f" || fail "verify - <$f"
    expect_ok config "$D/$f"
    [ "$out" = "$(cat "$D/qemu-server.conf")" ] || fail "config $f differs"
done
"$VMA" config "$D/ref-2dev.vma" | cmp - "$D/qemu-server.conf" || fail "config bytes differ"
"$VMA" config -c qemu-server.fw "$D/ref-2dev.vma" | cmp - "$D/qemu-server.fw" ||
    fail "config -c qemu-server.fw differs"
# option after the operand, as the deployed getopt allows
"$VMA" config "$D/ref-2dev.vma" -c qemu-server.fw | cmp - "$D/qemu-server.fw" ||
    fail "config ARCHIVE -c NAME"
zstd -q -d -c "$D/ref-2dev.vma.zst" | "$VMA" config - | cmp - "$D/qemu-server.conf" ||
    fail "zstd | vma config -"
expect_fail "no config named 'nope'" config -c nope "$D/ref-2dev.vma"

# ---- verify -v: listing, progress lines, summary ----------------------------------------
expect_ok verify -v "$D/ref-2dev.vma"
[ "$(printf '%s\n' "$out" | head -n 5)" = "$want_2dev" ] || fail "verify -v listing: $out"
printf '%s\n' "$out" | grep -Eq '^progress 100% \(read 1703936 bytes, duration [0-9]+ sec\)$' ||
    fail "verify -v: no 100% progress line: $out"
# 26 records of 64 KiB; zero blocks: a.raw and b.raw's (sector-rounded) zero blocks
printf '%s\n' "$out" | grep -Eq '^total bytes read 1703936, sparse bytes [0-9]+ \([0-9.e+]+%\)$' ||
    fail "verify -v: no summary line: $out"
printf '%s\n' "$out" | grep -Eq '^space reduction due to 4K zero blocks [0-9.e+-]+%$' ||
    fail "verify -v: no space reduction line: $out"
[ "$(printf '%s\n' "$out" | grep -c '^progress ')" -le 100 ] || fail "too many progress lines"
expect_ok verify -v "$D/ref-nodisk.vma"
[ "$(printf '%s\n' "$out" | tail -n 1)" = "vma archive contains no image data" ] ||
    fail "verify -v of a diskless archive: $out"
# a disk smaller than one cluster (the deployed tool divides by zero here)
expect_ok verify -v "$D/tiny.vma"
printf '%s\n' "$out" | grep -q '^progress 100% (read 65536 bytes' || fail "tiny verify -v: $out"

# ---- extract: bit-identical, sparse, from files and stdin, every compression -------------
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
for f in ref-2dev.vma ref-2dev.vma.gz ref-2dev.vma.lzo ref-2dev.vma.zst; do
    expect_ok extract "$D/$f" "$T/x-$f"
    [ "$out" = "DEVINFO $T/x-$f/tmp-disk-drive-scsi0.raw 1050112
DEVINFO $T/x-$f/tmp-disk-drive-efidisk0.raw 540672" ] || fail "extract $f stdout: $out"
    extract_check "x-$f"
    cat "$D/$f" | "$VMA" extract - "$T/s-$f" >/dev/null || fail "cat $f | vma extract -"
    extract_check "s-$f"
done

expect_ok extract "$D/ref-multiextent.vma" "$T/multi"
cmp "$T/multi/disk-drive-virtio0.raw" "$D/c.raw" || fail "c.raw differs"
expect_ok extract "$D/tiny.vma" "$T/tiny"
cmp "$T/tiny/disk-drive-scsi0.raw" "$D/tiny.raw" || fail "tiny.raw differs"
expect_ok extract "$D/vms.vma" "$T/vms"
cmp "$T/vms/vmstate.bin" "$D/vmstate.raw" || fail "vmstate.bin differs (zero block in place)"
[ -z "$out" ] || fail "vmstate extraction printed DEVINFO: $out"
expect_ok extract "$D/ref-nodisk.vma" "$T/nodisk"
[ "$(ls "$T/nodisk")" = "qemu-server.conf" ] || fail "nodisk: $(ls "$T/nodisk")"

# option order: -v after the archive, like `vma extract ./file.vma -v ./dir`
expect_ok extract "$D/ref-2dev.vma" -v "$T/verbose"
extract_check verbose
printf '%s\n' "$out" | head -n 2 | grep -c '^DEVINFO ' | grep -qx 2 || fail "extract -v: $out"
printf '%s\n' "$out" | grep -q '^total bytes read 1703936, sparse bytes ' || fail "extract -v: $out"

# -d: only the named devices
expect_ok extract -d drive-efidisk0 "$D/ref-2dev.vma" "$T/only"
cmp "$T/only/disk-drive-efidisk0.raw" "$D/b.raw" || fail "-d: efidisk differs"
[ ! -e "$T/only/disk-drive-scsi0.raw" ] || fail "-d: drive-scsi0 was extracted"
expect_fail "no device named 'drive-nope'" extract -d drive-scsi0,drive-nope "$D/ref-2dev.vma" \
    "$T/only2"
[ ! -e "$T/only2" ] || fail "-d with an unknown name created the directory"

# the target directory must not exist
mkdir "$T/exists"
expect_fail "File exists" extract "$D/tiny.vma" "$T/exists"
[ -z "$(ls "$T/exists")" ] || fail "extract into an existing directory wrote files"
exit 0
