#!/usr/bin/env bash
# Chains that cannot be restored, each refused with one clear line before anything is
# created: a delta archive without its base (the message names the uuid needed), a
# missing middle link, a foreign archive, the same base twice, '--base -', a loop, devices
# resized, renamed or added along the chain, a chain entry that does not parse, and a
# chain whose full archive lacks clusters that no delta archive has.
. "$(dirname "$0")/lib.bash"
. "$TESTDIR/chain-lib.bash"

C=$T/c
mkdir "$C"
make_chain "$C" 2 5
F=$C/full.vma
U0=$(uuid_of "$F")
U1=$(uuid_of "$C/inc1.vma")

# expect_refused GIST ARGS...: vma extract fails with GIST and creates nothing
expect_refused() {
    local gist=$1
    shift
    rm -rf "$T/out"
    expect_fail "$gist" extract "$@" "$T/out"
    [ ! -e "$T/out" ] || fail "extract $*: created the target directory"
}

expect_refused "archive $C/inc2.vma needs its base $U1: give it with --base" "$C/inc2.vma"
expect_refused "archive $C/inc1.vma needs its base $U0: give it with --base" "$C/inc1.vma"
expect_refused "needs its base $U1" --base "$F" "$C/inc2.vma"
expect_fail "needs its base $U1" verify --base "$F" "$C/inc2.vma"
expect_fail "needs its base $U0" merge -o "$T/m.vma" "$C/diff2.vma"

# a foreign archive: another full backup of the same disks
"$VMA" create "$T/other.vma" -d "format=raw:drive-scsi0=$C/s0-drive-scsi0.raw" \
    -d "format=raw:drive-virtio1=$C/s0-drive-virtio1.raw" || fail "create other.vma"
UO=$(uuid_of "$T/other.vma")
expect_refused "--base $T/other.vma (uuid $UO) is not part of the chain of $C/inc1.vma" \
    --base "$F" --base "$T/other.vma" "$C/inc1.vma"
expect_refused "needs its base $U0" --base "$T/other.vma" "$C/inc1.vma"
expect_refused "--base $C/inc1.vma (uuid $U1) is not part of the chain of $F" --base "$C/inc1.vma" "$F"
expect_fail "is not part of the chain" verify --base "$T/other.vma" "$F"

# the same base twice, or standard input as a base
expect_refused "the same archive (uuid $U0)" --base "$F" --base "$F" "$C/inc1.vma"
expect_refused "a base must be a file" --base - "$C/inc1.vma"

# a loop: two delta archives naming each other
UA=11111111-2222-4333-8444-555555555555
UB=66666666-7777-4888-8999-aaaaaaaaaaaa
"$MKDELTA" --uuid "$UA" --base-uuid "$UB" "$T/a.vma" "drive-scsi0=$C/s1-drive-scsi0.raw@0" >/dev/null &&
    "$MKDELTA" --uuid "$UB" --base-uuid "$UA" "$T/b.vma" "drive-scsi0=$C/s1-drive-scsi0.raw@1" >/dev/null ||
    fail "mkdelta loop"
expect_refused "names $UA as its base: the chain is a loop" --base "$T/b.vma" "$T/a.vma"

# devices along the chain: resized, missing, added
head -c 65536 /dev/urandom >"$T/small.raw"
"$VMA" create "$T/resized.vma" -d "format=raw:drive-scsi0=$T/small.raw" \
    -d "format=raw:drive-virtio1=$C/s0-drive-virtio1.raw" || fail "create resized.vma"
"$MKDELTA" --base "$T/resized.vma" "$T/on-resized.vma" "drive-scsi0=$C/s1-drive-scsi0.raw@0" \
    "drive-virtio1=$C/s1-drive-virtio1.raw@0" >/dev/null || fail "mkdelta on-resized"
S0=$(awk '$1 == "drive-scsi0" {print $2}' "$C/devs")
expect_refused "base $T/resized.vma: device drive-scsi0 has 65536 bytes, in $T/on-resized.vma it has $S0 (a resized disk needs a new full backup)" \
    --base "$T/resized.vma" "$T/on-resized.vma"
"$MKDELTA" --base "$F" "$T/one-disk.vma" "drive-scsi0=$C/s1-drive-scsi0.raw@0" >/dev/null ||
    fail "mkdelta one-disk"
expect_refused "base $F: device drive-virtio1 is not in $T/one-disk.vma" --base "$F" "$T/one-disk.vma"
"$MKDELTA" --base "$F" "$T/three.vma" "drive-scsi0=$C/s1-drive-scsi0.raw@0" \
    "drive-virtio1=$C/s1-drive-virtio1.raw@0" "drive-sata2=$T/small.raw" >/dev/null ||
    fail "mkdelta three"
expect_refused "base $F has no device drive-sata2" --base "$F" "$T/three.vma"

# a chain entry that does not parse: list, extract and verify refuse it
"$MKDELTA" --chain-text "format: 1\nkind: sideways\nbase: $U0\n" "$T/badentry.vma" \
    "drive-scsi0=$C/s1-drive-scsi0.raw@0" >/dev/null || fail "mkdelta badentry"
expect_fail "$T/badentry.vma: vmabackup-chain.conf: unknown kind 'sideways'" list "$T/badentry.vma"
expect_refused "vmabackup-chain.conf: unknown kind 'sideways'" --base "$F" "$T/badentry.vma"
expect_fail "unknown kind 'sideways'" verify "$T/badentry.vma"

# a full archive that lacks clusters (cut at an extent boundary) under a delta archive
"$MKDELTA" --kind full "$T/cut.vma" "drive-scsi0=$C/s0-drive-scsi0.raw@0-9" \
    "drive-virtio1=$C/s0-drive-virtio1.raw" >/dev/null || fail "mkdelta cut"
"$MKDELTA" --base "$T/cut.vma" "$T/on-cut.vma" "drive-scsi0=$C/s1-drive-scsi0.raw@10-12" \
    "drive-virtio1=$C/s1-drive-virtio1.raw@none" >/dev/null || fail "mkdelta on-cut"
rm -rf "$T/out"
expect_fail "chain of $T/on-cut.vma: detected missing cluster 13 for stream drive-scsi0 (in no archive of the chain)" \
    extract --base "$T/cut.vma" "$T/on-cut.vma" "$T/out"
[ -z "$(ls -A "$T/out")" ] || fail "a failed chain restore left files: $(ls "$T/out")"
expect_fail "detected missing cluster 10 for stream drive-scsi0" verify --base "$T/cut.vma" "$T/on-cut.vma"
expect_fail "detected missing cluster 13" merge -o "$T/m.vma" --base "$T/cut.vma" "$T/on-cut.vma"
[ ! -e "$T/m.vma" ] || fail "a failed merge left its output"
exit 0
