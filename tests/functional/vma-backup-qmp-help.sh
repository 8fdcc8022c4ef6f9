#!/usr/bin/env bash
# vma backup --help, and vma --help lists backup.
. "$(dirname "$0")/vma-backup-qmp.bash"

"$VMA" backup --help >"$T/out" || fail "backup --help"
head -n 1 "$T/out" | grep -qx "Usage: vma backup --qmp SOCKET \[OPTIONS\] OUTPUT" ||
    fail "backup --help: $(cat "$T/out")"
"$VMA" --help | grep -q '^  backup  ' || fail "vma --help does not list backup"
echo PASS
