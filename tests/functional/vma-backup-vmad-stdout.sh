#!/usr/bin/env bash
# `vma backup ... -` writes the archive to stdout (here through zstd), progress on
# stderr; the archive verifies and extracts from stdin to the images.
. "$(dirname "$0")/vma-backup-vmad.bash"
requires zstd

set -o pipefail
"$VMA" backup --qmp "$S" - 2>"$T/err" | zstd -q >"$T/std.vma.zst"
rc=$?
set +o pipefail
expect_rc 0 "backup to stdout"
grep -qE "$INFO_RE" "$T/err" || fail "no progress on stderr with '-': $(cat "$T/err")"
"$VMA" verify "$T/std.vma.zst" || fail "verify the archive from stdout"
zstd -q -d -c "$T/std.vma.zst" | "$VMA" extract - "$T/x2" >/dev/null 2>"$T/x.err" ||
    fail "extract - from zstd: $(cat "$T/x.err")"
cmp "$T/x2/disk-drive-scsi0.raw" "$T/a.raw" && cmp "$T/x2/disk-drive-scsi1.raw" "$T/b.raw" ||
    fail "disks from the stdout archive differ"
quit_vmad
echo PASS
