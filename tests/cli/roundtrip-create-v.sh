#!/usr/bin/env bash
# vma create -v: the progress line and the per-image summary on stderr.
. "$(dirname "$0")/roundtrip.bash"

run_vma create -v "$T/c.vma" drive-scsi0="$I/zeroes.raw"
[ "$rc" -eq 0 ] || fail "create -v: $err"
printf '%s\n' "$err" | grep -Eq '^progress 100% 2097152/2097152 [0-9]+$' || fail "create -v: $err"
printf '%s\n' "$err" | grep -Eq '^image drive-scsi0: size=2097152 zeros=[0-9]+ saved=[0-9]+$' ||
    fail "create -v image line: $err"
exit 0
