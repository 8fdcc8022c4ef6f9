#!/usr/bin/env bash
# `vma extract` options on the archives of the deployed Proxmox tool (tests/data): -v after
# the archive, -d with only the named devices (an unknown name creates nothing), and a
# target directory that exists already.
. "$(dirname "$0")/fixtures.bash"

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
