#!/usr/bin/env bash
# `vma backup` against a real vmad: archives to a file (relative paths, configs), to
# stdout piped through zstd, to exec:, a device subset with --json and -q; the
# vzdump-style progress lines; start errors (unknown device, existing output, unreadable
# config, backup already running, no vmad) and usage errors; Ctrl-C cancels (status 1,
# "backup canceled", no file left, query-backup agrees); the terminal mode (\r redraw)
# on a pty; a vmad that dies during the backup. The disks are static (no writer), so
# every extracted disk must equal its image.
. "$(dirname "$0")/qmp-lib.bash"
requires zstd cmp md5sum

VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built (make)"

BK=

S=$T/qmp.sock
MIB=$((1024 * 1024))
UNIT='(B|KiB|MiB|GiB|TiB|PiB)'
SIZE1="[0-9]+\\.[0-9] $UNIT"
RATE="([0-9]+\\.[0-9] $UNIT|0 B)/s"
INFO_RE="^INFO: +[0-9]{1,3}% \\($SIZE1 of $SIZE1\\) in [0-9]+[wdhms]( [0-9]+[wdhms])*, read: $RATE, write: $RATE\$"

# Disks: a has 8 MiB of random data and a tail; b is small and not a multiple of the
# 64 KiB cluster; ro is read-only (not in a default backup).
mkdir "$T/cwd"
truncate -s 32M "$T/a.raw"
head -c 8M /dev/urandom | dd of="$T/a.raw" bs=1M seek=4 conv=notrunc status=none
printf 'end of disk a' | dd of="$T/a.raw" bs=1 seek=$((32 * MIB - 13)) conv=notrunc status=none
truncate -s $((3 * MIB + 512)) "$T/b.raw"
printf 'disk b' | dd of="$T/b.raw" bs=1 seek=$((2 * MIB)) conv=notrunc status=none
truncate -s 1M "$T/ro.raw"
printf 'name: vm1\nmemory: 512\n' >"$T/qemu-server.conf"
printf '[OPTIONS]\nenable: 1\n' >"$T/fw"

start_vmad --monitor "$S" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=$T/b.raw" \
    --blockdev "driver=file,node-name=ro0,filename=$T/ro.raw,read-only=on"
wait_socket "$S"

# bk ARGS...: run vma backup; rc, $T/out, $T/err
bk() {
    "$VMA" backup "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
expect_rc() {
    [ "$rc" = "$1" ] || fail "$2: exit $rc, expected $1; stderr: $(cat "$T/err")"
}
expect_err() {
    [ "$(cat "$T/err")" = "$1" ] || fail "stderr: '$(cat "$T/err")', expected '$1'"
}
# check_extract ARCHIVE DIR DEV=IMAGE...: extract; every disk equals its image, no other
check_extract() {
    local a=$1 d=$2 m n
    shift 2
    "$VMA" extract "$a" "$d" >/dev/null 2>"$T/x.err" || fail "extract $a: $(cat "$T/x.err")"
    for m in "$@"; do
        cmp "$d/disk-${m%%=*}.raw" "${m#*=}" || fail "$a: disk ${m%%=*} differs from its image"
    done
    n=$(find "$d" -name 'disk-*.raw' | wc -l)
    [ "$n" = $# ] || fail "$a: $n disks extracted, expected $#"
}
list_uuid() {
    "$VMA" list --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'
}

# ---- to a file, relative paths, configs ----------------------------------------------
(cd "$T/cwd" && "$VMA" backup --qmp ../qmp.sock -c ../qemu-server.conf --firewall ../fw \
    full.vma >"$T/out" 2>"$T/err")
rc=$?
expect_rc 0 "backup to a relative path"
[ ! -s "$T/out" ] || fail "backup wrote to stdout: $(cat "$T/out")"
A=$T/cwd/full.vma
"$VMA" verify "$A" || fail "verify $A"
"$VMA" list "$A" >"$T/list" || fail "list $A"
grep -c '^DEV: ' "$T/list" | grep -qx 2 || fail "devices: $(cat "$T/list")"
grep -q '^DEV: dev_id=1 size: 33554432 devname: drive-scsi0$' "$T/list" || fail "$(cat "$T/list")"
grep -q "^DEV: dev_id=2 size: $((3 * MIB + 512)) devname: drive-scsi1\$" "$T/list" ||
    fail "$(cat "$T/list")"
"$VMA" config "$A" | cmp - "$T/qemu-server.conf" || fail "qemu-server.conf not stored"
"$VMA" config -c qemu-server.fw "$A" | cmp - "$T/fw" || fail "qemu-server.fw not stored"
check_extract "$A" "$T/x1" drive-scsi0="$T/a.raw" drive-scsi1="$T/b.raw"

# vzdump's lines, and nothing else
uuid=$(list_uuid "$A")
grep -qx "INFO: started backup task '$uuid'" "$T/err" || fail "no start line: $(cat "$T/err")"
grep -qE "$INFO_RE" "$T/err" || fail "no progress line: $(cat "$T/err")"
grep -qE "^INFO: 100% \\(35\\.0 MiB of 35\\.0 MiB\\) in " "$T/err" ||
    fail "last progress line: $(cat "$T/err")"
grep -qE "^INFO: backup is sparse: [0-9]+\\.[0-9]{2} $UNIT \\([0-9]+%\\) total zero data\$" \
    "$T/err" || fail "no sparse line: $(cat "$T/err")"
grep -qE "^INFO: transferred 35\\.00 MiB in ([0-9]+ seconds \\($RATE\\)|<1 seconds)\$" "$T/err" ||
    fail "no transferred line: $(cat "$T/err")"
if grep -v '^INFO: ' "$T/err" >&2; then
    fail "other output on stderr"
fi
if grep '\\r' "$T/err" >&2; then
    fail "carriage returns although stderr is no terminal"
fi

# ---- to stdout, through zstd ----------------------------------------------------------
set -o pipefail
"$VMA" backup --qmp "$S" - 2>"$T/err" | zstd -q >"$T/std.vma.zst"
rc=$?
set +o pipefail
expect_rc 0 "backup to stdout"
grep -qE "$INFO_RE" "$T/err" || fail "no progress on stderr with '-': $(cat "$T/err")"
"$VMA" verify "$T/std.vma.zst" || fail "verify the archive from stdout"
zstd -q -d -c "$T/std.vma.zst" | "$VMA" extract - "$T/x2" >/dev/null 2>"$T/x.err" ||
    fail "extract - from zstd: $(cat "$T/x.err")"
cmp "$T/x2/disk-drive-scsi0.raw" "$T/a.raw" && cmp "$T/x2/disk-drive-scsi1.raw" "$T/b.raw" ||
    fail "disks from the stdout archive differ"

# ---- exec: ---------------------------------------------------------------------------
bk --qmp "$S" "exec:cat >'$T/exec.vma'"
expect_rc 0 "backup to exec:"
check_extract "$T/exec.vma" "$T/x3" drive-scsi0="$T/a.raw" drive-scsi1="$T/b.raw"

# ---- --devlist, --json, -q -----------------------------------------------------------
bk --qmp "$S" --devlist drive-scsi1 --json -q --speed 1G --max-workers 3 "$T/one.vma"
expect_rc 0 "backup of one device"
[ ! -s "$T/err" ] || fail "-q printed: $(cat "$T/err")"
check_extract "$T/one.vma" "$T/x4" drive-scsi1="$T/b.raw"
python3 - "$T/out" "$(list_uuid "$T/one.vma")" "$T/one.vma" $((3 * MIB + 512)) <<'EOF' ||
import json, sys
text = open(sys.argv[1]).read()
assert text.count("\n") == 1, text
j = json.loads(text)
assert j["status"] == "done", j
assert j["uuid"] == sys.argv[2], j
assert j["backup-file"] == sys.argv[3], j
assert j["total"] == j["transferred"] == int(sys.argv[4]), j
assert "errmsg" not in j and j["finishing"] is False, j
EOF
    fail "--json: $(cat "$T/out")"

# ---- start errors: one line, status 1, nothing created ------------------------------
bk --qmp "$S" -d drive-scsi0,nope "$T/e1.vma"
expect_rc 1 "unknown device"
expect_err "vma: backup: Device 'nope' not found"
[ ! -e "$T/e1.vma" ] || fail "an unknown device left a file"

sum=$(md5sum <"$A")
bk --qmp "$S" "$A"
expect_rc 1 "existing output"
expect_err "vma: backup: create $A: File exists"
[ "$(md5sum <"$A")" = "$sum" ] || fail "an existing archive was changed"

bk --qmp "$S" -c "$T/no-such.conf" "$T/e2.vma"
expect_rc 1 "unreadable config"
expect_err "vma: backup: unable to read file '$T/no-such.conf'"
[ ! -e "$T/e2.vma" ] || fail "an unreadable config left a file"

"$VMA" backup --qmp "$S" - >&- 2>"$T/err"
rc=$?
expect_rc 1 "closed stdout"
expect_err "vma: backup: standard output: Bad file descriptor"

bk --qmp "$T/none.sock" "$T/e3.vma"
expect_rc 1 "no vmad"
grep -qx "vma: backup: connect to $T/none.sock: No such file or directory (is vmad running with --monitor $T/none.sock?)" \
    "$T/err" || fail "no vmad: $(cat "$T/err")"

for args in "$T/u.vma" "--qmp $S" "--qmp $S a b" "--qmp $S --speed 12Q $T/u.vma" \
    "--qmp $S --speed -1 $T/u.vma" "--qmp $S --max-workers 0 $T/u.vma" \
    "--qmp $S --interval 0 $T/u.vma" "--qmp $S --json -" "--qmp $S --bogus $T/u.vma" \
    "--qmp $S exec:"; do
    # shellcheck disable=SC2086
    bk $args
    expect_rc 2 "usage error for: $args"
    grep -q "^vma backup: .*(try 'vma backup --help')\$" "$T/err" || fail "usage: $(cat "$T/err")"
done
[ ! -e "$T/u.vma" ] || fail "a usage error created the output"

# ---- Ctrl-C cancels; a second backup meanwhile is refused ----------------------------
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

# ---- a terminal: one line redrawn with \r ---------------------------------------------
py "$VMA" "$S" "$T" <<'EOF' || fail "terminal mode"
import os, pty, sys
vma, sock, T = sys.argv[1:4]

def run(args):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(vma, [vma, "backup", "--qmp", sock] + args)
    out = b""
    while True:
        try:
            d = os.read(fd, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out.decode()

rc, out = run(["--speed", "16M", "--interval", "0.1", T + "/tty.vma"])
assert rc == 0, (rc, out)
assert "\rINFO: " in out and "\x1b[K" in out, repr(out)
assert out.count("\rINFO: ") >= 2, repr(out)
lines = out.split("\r\n")
assert lines[-1] == "", repr(out)
assert lines[-2].startswith("INFO: transferred 35.00 MiB"), repr(out)
assert "INFO: 100% (35.0 MiB of 35.0 MiB)" in lines[-4], repr(out)

rc, out = run(["-"])
assert rc == 1, (rc, out)
assert out == "vma: backup: refusing to write the archive to a terminal\r\n", repr(out)
EOF
check_extract "$T/tty.vma" "$T/x5" drive-scsi0="$T/a.raw" drive-scsi1="$T/b.raw"
check_log

# ---- vmad dies during the backup: an error, outcome unknown ---------------------------
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

echo "PASS"
