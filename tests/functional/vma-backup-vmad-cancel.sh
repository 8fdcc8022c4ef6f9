#!/usr/bin/env bash
# Ctrl-C cancels a `vma backup` (status 1, "backup canceled", no file left under either
# name, --json and query-backup agree); while it runs, progress lines appear, the output
# exists under its temporary name only, and a second backup is refused.
. "$(dirname "$0")/vma-backup-vmad.bash"

"$VMA" backup --qmp "$S" --speed 256K --interval 0.2 --json "$T/cancel.vma" \
    >"$T/c.out" 2>"$T/c.err" &
BK=$!
cleanup_pid "$BK"
# a progress line appears after 3 s while the backup runs
for _ in $(seq 1 150); do
    grep -qE "$INFO_RE" "$T/c.err" && break
    kill -0 "$BK" 2>/dev/null || break
    sleep 0.1
done
grep -qE "$INFO_RE" "$T/c.err" || fail "no progress line while running: $(cat "$T/c.err")"
grep -qE '^INFO: +100%' "$T/c.err" && fail "the slow backup finished too early"
# the output exists while the backup runs, under its temporary name only
compgen -G "$T/.cancel.vma.tmp-??????" >/dev/null || fail "no output file while the backup runs"
[ ! -e "$T/cancel.vma" ] || fail "the unfinished archive is under its final name"

bk --qmp "$S" "$T/second.vma"
expect_rc 1 "a second backup"
expect_err "vma: backup: previous backup not finished"
[ ! -e "$T/second.vma" ] || fail "the refused backup created its file"

kill -INT "$BK"
wait "$BK"
rc=$?
forget_pid "$BK"
BK=
[ "$rc" = 1 ] || fail "Ctrl-C: exit $rc; stderr: $(cat "$T/c.err")"
[ "$(tail -n 1 "$T/c.err")" = "vma: backup: backup canceled" ] || fail "Ctrl-C: $(cat "$T/c.err")"
[ ! -e "$T/cancel.vma" ] || fail "a cancelled backup left its file"
! compgen -G "$T/.cancel.vma.tmp-*" >/dev/null || fail "a cancelled backup left its temporary file"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["status"]=="error" and j["errmsg"]=="backup canceled", j' \
    "$T/c.out" || fail "--json after cancel: $(cat "$T/c.out")"
py "$S" <<'EOF' || fail "query-backup after Ctrl-C"
import sys
from qmp import QMP
q = QMP(sys.argv[1])
q.negotiate()
st = q.ok("query-backup")
assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
EOF
quit_vmad
echo PASS
