# tests/functional/vma-backup-qmp.bash — what the vma-backup-qmp-*.sh tests share
# (sourced): qmp-lib.bash, then fake (the scripted QMP server of fakeqmp.py on
# $T/fake.sock), run (vma backup against it: rc, $T/out, $T/err, the requests it got in
# $T/requests) and expect_backup_fail.
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
requires timeout

VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built (make)"

SRV_PID=

# fake SCENARIO: start the fake server on $T/fake.sock
fake() {
    rm -f "$T/fake.sock" "$T/requests"
    python3 "$SRCDIR/tests/functional/fakeqmp.py" "$T/fake.sock" "$1" "$T/requests" \
        2>>"$T/fake.err" &
    SRV_PID=$!
    cleanup_pid "$SRV_PID"
    local i
    for i in $(seq 1 100); do
        [ -S "$T/fake.sock" ] && return 0
        sleep 0.05
    done
    fail "the fake server did not start: $(cat "$T/fake.err")"
}
# run SCENARIO ARGS...: vma backup against the fake server; rc, $T/out, $T/err
run() {
    fake "$1"
    shift
    timeout 20 "$VMA" backup --qmp "$T/fake.sock" --interval 0.05 "$@" >"$T/out" 2>"$T/err"
    rc=$?
    wait "$SRV_PID"
    forget_pid "$SRV_PID"
    SRV_PID=
}
expect_backup_fail() {
    local scenario=$1 want=$2
    run "$scenario" "$T/x.vma"
    [ "$rc" = 1 ] || fail "$scenario: exit $rc; $(cat "$T/err")"
    [ "$(tail -n 1 "$T/err")" = "$want" ] ||
        fail "$scenario: stderr '$(cat "$T/err")', expected last line '$want'"
}
