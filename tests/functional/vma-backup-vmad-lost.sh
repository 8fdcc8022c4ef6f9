#!/usr/bin/env bash
# vmad dies (SIGKILL) during a `vma backup`: an error, status 1, the outcome unknown.
. "$(dirname "$0")/vma-backup-vmad.bash"

"$VMA" backup --qmp "$S" --speed 256K "$T/lost.vma" >/dev/null 2>"$T/l.err" &
BK=$!
cleanup_pid "$BK"
for _ in $(seq 1 100); do
    grep -q "^INFO: started backup task" "$T/l.err" && break
    sleep 0.1
done
grep -q "^INFO: started backup task" "$T/l.err" || fail "no start: $(cat "$T/l.err")"
kill -9 "$VMAD_PID"
wait "$VMAD_PID" 2>/dev/null
forget_pid "$VMAD_PID"
VMAD_PID=
wait "$BK"
rc=$?
forget_pid "$BK"
BK=
[ "$rc" = 1 ] || fail "lost vmad: exit $rc; $(cat "$T/l.err")"
[ "$(tail -n 1 "$T/l.err")" = "vma: backup: $S: connection closed by the server (the backup's outcome is unknown)" ] ||
    fail "lost vmad: $(cat "$T/l.err")"
echo PASS
