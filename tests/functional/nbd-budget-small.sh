#!/usr/bin/env bash
# vmad --nbd-buffer-budget: the same flood as nbd-budget.sh against a 16 MiB budget; the
# peak RSS bound shrinks with it (a bound 240 MiB below the default's), and a
# well-behaved client still gets through. Bad values are refused at startup.
. "$(dirname "$0")/lib.bash"
for bad in 0 512K 12x -1M; do
    rc=0
    "${VMAD:-$BUILDDIR/vmad}" --nbd-buffer-budget "$bad" >"$T/out" 2>"$T/err" || rc=$?
    [ $rc = 1 ] || fail "--nbd-buffer-budget $bad: exit status $rc, expected 1"
    grep -q "^vmad: --nbd-buffer-budget $bad: " "$T/err" ||
        fail "--nbd-buffer-budget $bad: $(cat "$T/err")"
done
NBD_BUDGET_MIB=16 bash "$SRCDIR/tests/functional/nbd-budget.sh"
exit $?
