#!/usr/bin/env bash
# `vma backup` to an exec: target: the archive extracts to the images.
. "$(dirname "$0")/vma-backup-vmad.bash"

bk --qmp "$S" "exec:cat >'$T/exec.vma'"
expect_rc 0 "backup to exec:"
check_extract "$T/exec.vma" "$T/x3" drive-scsi0="$T/a.raw" drive-scsi1="$T/b.raw"
quit_vmad
echo PASS
