#!/usr/bin/env bash
# `vma create` writes a new archive as .NAME.tmp-XXXXXX in the target directory and
# renames it to NAME only when complete. The create is held in the middle of its output
# (the fault-injection shim answers its writes with EINTR while an arm file exists, so it
# retries without progress): there is the temporary file with data, and no NAME. kill -9
# then leaves only the temporary file; released instead, the create finishes and NAME
# appears with no temporary file left. A failing flush of the directory after the rename
# fails the create and leaves nothing.
. "$(dirname "$0")/lib.bash"
BUILDDIR=${BUILDDIR:-$(cd "$TESTDIR/../.." && pwd)/build}
. "$TESTDIR/../functional/faults-lib.bash"

I=$T/img
O=$T/out
mkdir "$I" "$O"
truncate -s 64M "$I/a.raw"
head -c 16M /dev/urandom | dd of="$I/a.raw" bs=1M seek=8 conv=notrunc status=none
printf 'memory: 512\n' >"$I/qemu-server.conf"
PID=
on_exit '[ -z "$PID" ] || kill -9 "$PID"'

# tmp_of NAME: the temporary file of NAME in $O (one line per file)
tmp_of() {
    find "$O" -maxdepth 1 -name ".$1.tmp-??????" -printf '%f\n'
}

# held_create NAME: start a create of $O/NAME whose writes stall (EINTR, retried at once)
# after the header and two extents; returns once its output file holds them and stays
# the same size. Sets PID. The retries are not logged (one line each would flood the log).
held_create() {
    : >"$T/arm"
    # exec'ed, so that PID is the create itself (faulty is a shell function)
    exec env FAULTINJ="op=writev,path=$O/*$1*,after=3,mode=eintr,if=$T/arm" \
        FAULTINJ_RESTORE_PRELOAD="${LD_PRELOAD:-}" LD_PRELOAD="$(_fault_preload "$VMA")" \
        "$VMA" create -c "$I/qemu-server.conf" "$O/$1" drive-scsi0="$I/a.raw" \
        2>"$T/create.err" &
    PID=$!
    local i t size last=-1 same=0
    for i in $(seq 1 400); do
        # whatever the create writes to (a temporary file, or the final name if broken)
        t=$(find "$O" -maxdepth 1 -name "*$1*" -printf '%f\n' | head -n 1)
        size=0
        [ -z "$t" ] || size=$(stat -c %s "$O/$t" 2>/dev/null || echo 0)
        if [ "$size" -gt 0 ] && [ "$size" = "$last" ]; then
            same=$((same + 1))
            [ $same -lt 3 ] || return 0
        else
            same=0
        fi
        last=$size
        kill -0 "$PID" 2>/dev/null || fail "create of $1 ended early: $(cat "$T/create.err")"
        sleep 0.025
    done
    fail "create of $1: no stalled output file after 10 s: $(ls -A "$O")"
}

# ---- kill -9 in the middle --------------------------------------------------------------
held_create killed.vma
[ ! -e "$O/killed.vma" ] || fail "during create: the archive is under its final name"
kill -9 "$PID"
wait "$PID" 2>/dev/null
PID=
rm -f "$T/arm"
[ ! -e "$O/killed.vma" ] || fail "kill -9: the partial archive is under its final name"
t=$(tmp_of killed.vma)
[ "$(printf '%s\n' "$t" | grep -c .)" = 1 ] || fail "kill -9: want one temporary file: $(ls -A "$O")"
[ "$(ls -A "$O" | wc -l)" = 1 ] || fail "kill -9: more than the temporary file: $(ls -A "$O")"
[ "$(stat -c %a "$O/$t")" = 600 ] || fail "kill -9: mode of $t is $(stat -c %a "$O/$t")"
run_vma verify "$O/$t"
[ "$rc" != 0 ] || fail "kill -9: the temporary file verifies as complete"
rm -f "$O/$t"

# ---- held, then released: the final name appears only at the end ------------------------
held_create done.vma
[ ! -e "$O/done.vma" ] || fail "during create: the archive is under its final name"
rm -f "$T/arm"
wait "$PID"
rc=$?
PID=
[ "$rc" = 0 ] || fail "released create exited $rc: $(cat "$T/create.err")"
[ "$(ls -A "$O")" = done.vma ] || fail "after create: want only done.vma: $(ls -A "$O")"
[ "$(stat -c %a "$O/done.vma")" = 600 ] || fail "mode of done.vma is $(stat -c %a "$O/done.vma")"
expect_ok verify "$O/done.vma"
expect_ok extract "$O/done.vma" "$T/x"
cmp "$T/x/disk-drive-scsi0.raw" "$I/a.raw" || fail "extracted image differs"

# ---- the directory flush after the rename fails: an error, and nothing is left ----------
rc=0
faulty "op=fsync,path=$O,err=EIO" "$VMA" create "$O/dsync.vma" drive-scsi0="$I/a.raw" \
    2>"$T/create.err" || rc=$?
[ "$rc" = 1 ] || fail "failing directory flush: exit $rc: $(cat "$T/create.err")"
grep -qx "vma: create: flush directory of $O/dsync.vma: Input/output error" "$T/create.err" ||
    fail "failing directory flush: $(cat "$T/create.err")"
[ "$(faults_injected "fsync")" -ge 1 ] || fail "failing directory flush: no fault injected"
[ "$(ls -A "$O")" = done.vma ] || fail "failing directory flush left: $(ls -A "$O")"

# ---- an existing final name is refused before anything is written -----------------------
expect_fail "create $O/done.vma: File exists" create "$O/done.vma" drive-scsi0="$I/a.raw"
[ "$(ls -A "$O")" = done.vma ] || fail "refused create left files: $(ls -A "$O")"
exit 0
