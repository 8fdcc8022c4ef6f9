#!/usr/bin/env bash
# `vma backup` warns when the archive vmad wrote does not exist on its side (vmad with a
# private /tmp, or another file system); the scripted server (fakeqmp.py) writes none.
. "$(dirname "$0")/vma-backup-qmp.bash"

run ok -q "$T/missing.vma"
[ "$rc" = 0 ] || fail "missing: exit $rc; $(cat "$T/err")"
[ "$(cat "$T/err")" = "vma: backup: warning: $T/missing.vma does not exist here although vmad wrote it (does vmad see another file system?)" ] ||
    fail "missing: $(cat "$T/err")"
echo PASS
