#!/usr/bin/env bash
# `make demo`: the archive round trip on a built-in example.
#
# Creates a VMA archive from two example disk images and a VM config (the ones the
# compatibility fixtures were made from), lists it, verifies it, extracts it into a new
# directory and shows that every extracted disk and config equals its source. Then reads
# a Proxmox-written archive of the same data, compressed with zstd, from stdin.
set -euo pipefail
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
VMA=${VMA:-$BUILDDIR/vma}
DATA=$SRCDIR/tests/data

work=$(mktemp -d "${TMPDIR:-/tmp}/vma-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cd "$work"
cp "$DATA/a.raw" disk0.raw
cp "$DATA/b.raw" efidisk.raw
cp "$DATA/qemu-server.conf" "$DATA/qemu-server.fw" .

step "create an archive of two disks and two configs"
run "$VMA" create -v -c qemu-server.conf -c qemu-server.fw backup.vma \
    -d format=raw:drive-scsi0=disk0.raw -d format=raw:drive-efidisk0=efidisk.raw
ls -l backup.vma

step "list it"
run "$VMA" list backup.vma

step "verify it"
run "$VMA" verify -v backup.vma | grep -v "^progress"

step "extract it"
run "$VMA" extract backup.vma restored

step "compare with the sources"
for pair in "disk0.raw restored/disk-drive-scsi0.raw" \
            "efidisk.raw restored/disk-drive-efidisk0.raw" \
            "qemu-server.conf restored/qemu-server.conf" \
            "qemu-server.fw restored/qemu-server.fw"; do
    set -- $pair
    if cmp -s "$1" "$2"; then
        printf '  identical: %-20s = %s\n' "$1" "$2"
    else
        printf '  DIFFERENT: %s and %s\n' "$1" "$2"
        exit 1
    fi
done

step "a Proxmox-written archive, zstd-compressed, read from stdin"
printf '$ cat ref-2dev.vma.zst | vma extract - restored2\n'
"$VMA" extract - restored2 < "$DATA/ref-2dev.vma.zst"
cmp restored2/disk-drive-scsi0.raw disk0.raw && echo "  identical: drive-scsi0 from the Proxmox archive"

echo
echo "demo: all good"
