#!/usr/bin/env bash
# `vma backup` start errors: one line, status 1, nothing created or changed (an unknown
# device, an existing output, an unreadable config, a closed stdout, no vmad).
. "$(dirname "$0")/vma-backup-vmad.bash"
requires md5sum

bk --qmp "$S" -d drive-scsi0,nope "$T/e1.vma"
expect_rc 1 "unknown device"
expect_err "vma: backup: Device 'nope' not found"
[ ! -e "$T/e1.vma" ] || fail "an unknown device left a file"

# an existing archive
A=$T/full.vma
bk --qmp "$S" --devlist drive-scsi1 -q "$A"
expect_rc 0 "backup to $A"
sum=$(md5sum <"$A")
bk --qmp "$S" "$A"
expect_rc 1 "existing output"
expect_err "vma: backup: create $A: File exists"
[ "$(md5sum <"$A")" = "$sum" ] || fail "an existing archive was changed"

bk --qmp "$S" -c "$T/no-such.conf" "$T/e2.vma"
expect_rc 1 "unreadable config"
expect_err "vma: backup: unable to read file '$T/no-such.conf'"
[ ! -e "$T/e2.vma" ] || fail "an unreadable config left a file"

"$VMA" backup --qmp "$S" - >&- 2>"$T/err"
rc=$?
expect_rc 1 "closed stdout"
expect_err "vma: backup: standard output: Bad file descriptor"

bk --qmp "$T/none.sock" "$T/e3.vma"
expect_rc 1 "no vmad"
grep -qx "vma: backup: connect to $T/none.sock: No such file or directory (is vmad running with --monitor $T/none.sock?)" \
    "$T/err" || fail "no vmad: $(cat "$T/err")"
quit_vmad
echo PASS
