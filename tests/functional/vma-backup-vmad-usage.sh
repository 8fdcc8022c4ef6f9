#!/usr/bin/env bash
# `vma backup` usage errors: status 2, one message pointing to --help, no output created.
. "$(dirname "$0")/vma-backup-vmad.bash"

for args in "$T/u.vma" "--qmp $S" "--qmp $S a b" "--qmp $S --speed 12Q $T/u.vma" \
    "--qmp $S --speed -1 $T/u.vma" "--qmp $S --max-workers 0 $T/u.vma" \
    "--qmp $S --interval 0 $T/u.vma" "--qmp $S --json -" "--qmp $S --bogus $T/u.vma" \
    "--qmp $S exec:"; do
    # shellcheck disable=SC2086
    bk $args
    expect_rc 2 "usage error for: $args"
    grep -q "^vma backup: .*(try 'vma backup --help')\$" "$T/err" || fail "usage: $(cat "$T/err")"
done
[ ! -e "$T/u.vma" ] || fail "a usage error created the output"
quit_vmad
echo PASS
