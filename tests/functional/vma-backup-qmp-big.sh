#!/usr/bin/env bash
# `vma backup`'s text for a 1.5 TiB backup from a scripted server (fakeqmp.py), and
# --speed 1TiB sent as bytes.
. "$(dirname "$0")/vma-backup-qmp.bash"

run big --speed 1TiB "$T/x.vma"
[ "$rc" = 0 ] || fail "big: exit $rc; $(cat "$T/err")"
grep -q "^INFO: 100% (1.5 TiB of 1.5 TiB) in 0s, read: " "$T/err" || fail "big: $(cat "$T/err")"
grep -qx "INFO: backup is sparse: 1023.00 B (0%) total zero data" "$T/err" || fail "big: $(cat "$T/err")"
grep -qx "INFO: transferred 1.50 TiB in <1 seconds" "$T/err" || fail "big: $(cat "$T/err")"
grep -q '"speed": 1099511627776' "$T/requests" || fail "big: --speed 1TiB: $(cat "$T/requests")"
echo PASS
