#!/usr/bin/env bash
# What `vma backup` must refuse with one error line instead of hanging or crashing, from a
# scripted server (fakeqmp.py): not a QMP server, a closed connection, a reply with
# another id, deep nesting, invalid JSON, a NUL byte, a malformed event, wrongly typed
# status members, another backup's uuid, and a failed backup's errmsg.
. "$(dirname "$0")/vma-backup-qmp.bash"

P=$T/fake.sock
expect_backup_fail garbage "vma: backup: $P: not a QMP monitor (unexpected byte 0x4e outside a message)"
expect_backup_fail close "vma: backup: $P: qmp_capabilities: $P: connection closed by the server"
expect_backup_fail wrong-id "vma: backup: $P: QMP protocol error: a reply with another id than backup's"
expect_backup_fail noid-error "vma: backup: cannot parse that"
expect_backup_fail deep "vma: backup: $P: QMP protocol error: message nested deeper than 1024"
expect_backup_fail nul "vma: backup: $P: QMP protocol error: NUL byte in a message"
expect_backup_fail badevent "vma: backup: $P: QMP protocol error: an event name is not a string"
expect_backup_fail badtype "vma: backup: query-backup: 'total' is not a non-negative integer"
expect_backup_fail other-uuid "vma: backup: vmad reports another backup now (uuid u-2)"
expect_backup_fail error-status "vma: backup: write to x: No space left on device"
run badjson "$T/x.vma"
[ "$rc" = 1 ] || fail "badjson: exit $rc"
grep -q "^vma: backup: $P: QMP protocol error: invalid JSON: " "$T/err" || fail "badjson: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "badjson: $(cat "$T/err")"
echo PASS
