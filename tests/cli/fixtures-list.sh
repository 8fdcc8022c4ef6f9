#!/usr/bin/env bash
# `vma list` of the archives written by the deployed Proxmox tool (tests/data): the
# recorded lines exactly, from files and from stdin, plain and compressed.
. "$(dirname "$0")/fixtures.bash"

# the recorded lines (tests/data/README.md), exactly
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
exit 0
