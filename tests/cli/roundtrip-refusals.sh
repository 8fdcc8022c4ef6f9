#!/usr/bin/env bash
# What vma create must refuse leaves nothing behind: an empty image, an existing archive,
# a missing image, device names that escape or hide, a name given twice, a config too
# large, usage errors, a format the image is not in or that does not exist; a failing
# exec: target fails the create.
. "$(dirname "$0")/roundtrip.bash"

# an existing archive
expect_ok create "$T/a.vma" drive-scsi0="$I/odd-1.raw"

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
expect_usage create "$T/f.vma" -d "format=qcow 2:drive-scsi0=$I/odd-1.raw"
expect_usage create "$T/f.vma" -d format=:drive-scsi0="$I/odd-1.raw"
# a format qemu-nbd cannot open the image in: its reason, and no archive
expect_fail "not in qcow2 format" create "$T/f.vma" -d format=qcow2:drive-scsi0="$I/odd-1.raw"
expect_fail "Unknown driver 'nosuch'" create "$T/f.vma" -d format=nosuch:drive-scsi0="$I/odd-1.raw"
expect_usage create "$T/f.vma" -d format=raw:a="$I/odd-1.raw" b="$I/odd-1.raw"
expect_usage create
[ ! -e "$T/f.vma" ] || fail "refused create left an archive"
# a command that fails: the archive is not kept and the status says so
run_vma create "exec:exit 3" drive-scsi0="$I/zeroes.raw"
[ "$rc" -eq 1 ] || fail "create to a failing exec: exited $rc"
exit 0
