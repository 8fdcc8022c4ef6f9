#!/usr/bin/env bash
# contrib/vma-web-backup (what vma-web-backup@.service runs) over vma-web's UNIX socket:
# two scheduled backups with the VM's retention keep-last 1 leave one archive, the
# newer; a backup vmad refuses makes it exit 1 with the daemon's message; the units
# name the script and the timer has a schedule.
. "$(dirname "$0")/web-lib.bash"
requires curl
truncate -s 1M "$T/d0.raw"
web_vmad 100 --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"
env "${web_san_env[@]}" "$VMA_WEB" --listen "unix:$T/web.sock" --run-dir "$WEB_RUN" --backup-dir "$WEB_BACKUP" \
    >>"$WEB_LOG" 2>&1 </dev/null &
WEB_PID=$!
cleanup_pid "$WEB_PID"
for i in $(seq 1 200); do [ -S "$T/web.sock" ] && break; sleep 0.05; done
[ -S "$T/web.sock" ] || fail "no vma-web socket"
export VMA_WEB_URL=unix:$T/web.sock VMA_WEB_TOKEN_FILE=$WEB_BACKUP/vma-web.token
tok=$(cat "$VMA_WEB_TOKEN_FILE")
printf 'Authorization: Bearer %s\n' "$tok" | curl -sS --fail -H @- --unix-socket "$T/web.sock" \
    -X POST --data '{"keep-last": 1}' http://localhost/api/v1/vms/100/retention >/dev/null ||
    fail "set retention"
B=$SRCDIR/contrib/vma-web-backup
"$B" 100 >"$T/o1" 2>&1 || fail "first backup: $(cat "$T/o1")"
sleep 1.1
"$B" 100 >"$T/o2" 2>&1 || fail "second backup: $(cat "$T/o2")"
mapfile -t left < <(cd "$WEB_BACKUP/100" && ls vzdump-qemu-100-*.vma.zst)
[ "${#left[@]}" = 1 ] || fail "retention keep-last 1 left ${left[*]}"
grep -q "${left[0]} done" "$T/o2" || fail "the newer archive was not kept: ${left[*]}; $(cat "$T/o2")"
# an error is reported with the daemon's words
VMA_WEB_MODE=bogus "$B" 100 >"$T/o3" 2>&1 && fail "a bad mode succeeded"
grep -q "mode: expected one of" "$T/o3" || fail "error text: $(cat "$T/o3")"
"$B" 'x/..' >/dev/null 2>&1 && fail "a bad VM id was accepted"
grep -q "ExecStart=.*vma-web-backup %i" "$SRCDIR/contrib/vma-web-backup@.service" || fail "unit"
grep -q "^OnCalendar=" "$SRCDIR/contrib/vma-web-backup@.timer" || fail "timer"
kill -TERM "$WEB_PID"; wait "$WEB_PID" || fail "vma-web exit status"; forget_pid "$WEB_PID"
[ ! -e "$T/web.sock" ] || fail "vma-web left its socket"
quit_vmad
echo PASS
