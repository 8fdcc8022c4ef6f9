#!/usr/bin/env bash
# tests/lib.bash itself, through small scripts that source it: requires skips (exit 77)
# naming the missing tool; fail exits 1 with "FAIL: ..." and the on_fail output; at exit
# a registered pid is killed, on_exit commands run last-registered first, $T and every
# new_tmpdir are removed (after a pass and after a failure alike); start_vmad waits for
# the sockets its arguments name and records the monitor for quit_vmad; quit_vmad and
# stop_vmad see vmad exit 0; a vmad that dies at startup fails start_vmad.
. "$(dirname "$0")/qmp-lib.bash"
LIB=$SRCDIR/tests/lib.bash

# child SCRIPT: run SCRIPT (bash, sourcing the library first); rc, $T/c.out, $T/c.err
child() {
    bash -c ". $(printf %q "$LIB"); $1" >"$T/c.out" 2>"$T/c.err"
    rc=$?
}

child 'requires sh no-such-tool-here; echo "not skipped"'
[ $rc = 77 ] || fail "requires: exit $rc, want 77"
[ "$(cat "$T/c.out")" = "SKIP: no-such-tool-here is not installed" ] ||
    fail "requires: output '$(cat "$T/c.out")'"
child 'need_tools sh; echo ok'
[ $rc = 0 ] && [ "$(cat "$T/c.out")" = ok ] || fail "need_tools with a present tool: exit $rc"

child 'on_fail "echo context >&2"; fail "it broke"; echo "not reached"'
[ $rc = 1 ] || fail "fail: exit $rc, want 1"
[ "$(cat "$T/c.err")" = "FAIL: it broke
context" ] || fail "fail: stderr '$(cat "$T/c.err")'"
[ ! -s "$T/c.out" ] || fail "fail returned"

for end in 'exit 0' 'fail boom'; do
    child 'sleep 600 & cleanup_pid $!; echo "pid $!"; echo "T $T"
new_tmpdir X; echo "X $X"
on_exit "echo first-registered"; on_exit "echo last-registered"
'"$end"
    pid=$(sed -n 's/^pid //p' "$T/c.out")
    dir=$(sed -n 's/^T //p' "$T/c.out")
    x=$(sed -n 's/^X //p' "$T/c.out")
    [ -n "$pid" ] && [ -n "$dir" ] && [ -n "$x" ] || fail "$end: output $(cat "$T/c.out")"
    ! kill -0 "$pid" 2>/dev/null || { kill "$pid"; fail "$end: the registered pid survived"; }
    [ ! -e "$dir" ] || fail "$end: \$T $dir left behind"
    [ ! -e "$x" ] || fail "$end: new_tmpdir $x left behind"
    [ "$(tail -n 2 "$T/c.out" | tr '\n' ' ')" = "last-registered first-registered " ] ||
        fail "$end: on_exit order: $(tail -n 2 "$T/c.out")"
done

# start_vmad: the monitor given as --chardev + --monitor chardev=, and an NBD socket
start_vmad --chardev "socket,id=m0,path=$T/m.sock,server=on,wait=off" --monitor chardev=m0 \
    --nbd-server "addr.type=unix,addr.path=$T/n.sock"
[ -S "$T/m.sock" ] && [ -S "$T/n.sock" ] || fail "start_vmad returned before the sockets exist"
[ "$VMAD_QMP" = "$T/m.sock" ] || fail "VMAD_QMP is '$VMAD_QMP'"
pid=$VMAD_PID
quit_vmad 10
! kill -0 "$pid" 2>/dev/null || fail "vmad still runs after quit_vmad"
[ -z "$VMAD_PID" ] || fail "VMAD_PID still set"

start_vmad --monitor "path=$T/q.sock,mode=0600"
[ "$VMAD_QMP" = "$T/q.sock" ] || fail "VMAD_QMP is '$VMAD_QMP'"
stop_vmad INT 10

# a vmad that cannot start fails start_vmad (and the log shows why)
child 'start_vmad --monitor "$T/m.sock" --bogus; echo "not reached"'
[ $rc = 1 ] || fail "start_vmad of a failing vmad: exit $rc"
grep -q "^FAIL: vmad exited before creating .*/m.sock$" "$T/c.err" ||
    fail "start_vmad of a failing vmad: $(cat "$T/c.err")"
grep -q "unknown option --bogus" "$T/c.err" || fail "the vmad log was not shown: $(cat "$T/c.err")"
echo PASS
