#!/usr/bin/env bash
# `vma create -` writes the archive to standard output, as `vma backup -` does: a pipe
# into `vma verify -` and `vma extract -` round-trips, a regular file on stdout gets the
# archive, no file named '-' appears, and a terminal on stdout is refused.
. "$(dirname "$0")/lib.bash"

I=$T/img
W=$T/work
mkdir "$I" "$W"
head -c $((3 * 65536 + 12345)) /dev/urandom >"$I/a.raw"
truncate -s 1M "$I/b.raw"
printf 'memory: 512\n' >"$I/qemu-server.conf"
cd "$W" || fail "cd"

# ---- a pipe: create - | verify -, then create - | extract - ----------------------------
"$VMA" create -c "$I/qemu-server.conf" - -d format=raw:drive-scsi0="$I/a.raw" \
    -d format=raw:drive-scsi1="$I/b.raw" 2>"$T/create.err" |
    "$VMA" verify - >"$T/verify.out" 2>"$T/verify.err"
st=("${PIPESTATUS[@]}")
[ "${st[0]}" = 0 ] || fail "create - exited ${st[0]}: $(cat "$T/create.err")"
[ "${st[1]}" = 0 ] || fail "verify - exited ${st[1]}: $(cat "$T/verify.err")"
[ ! -s "$T/create.err" ] || fail "create - wrote to stderr: $(cat "$T/create.err")"
[ ! -e "$W/-" ] || fail "create - created a file named '-'"
[ -z "$(ls -A "$W")" ] || fail "create - left files in the current directory: $(ls -A "$W")"

with_timeout 60 "$VMA" create - drive-scsi0="$I/a.raw" 2>"$T/create.err" |
    with_timeout 60 "$VMA" extract - "$T/x" 2>"$T/extract.err"
st=("${PIPESTATUS[@]}")
[ "${st[0]}" = 0 ] || fail "create - | extract: create exited ${st[0]}: $(cat "$T/create.err")"
[ "${st[1]}" = 0 ] || fail "create - | extract: extract exited ${st[1]}: $(cat "$T/extract.err")"
cmp "$T/x/disk-drive-scsi0.raw" "$I/a.raw" || fail "extract of create - differs"
[ ! -e "$W/-" ] || fail "create - created a file named '-'"

# ---- a regular file on stdout ----------------------------------------------------------
"$VMA" create - drive-scsi0="$I/a.raw" >"$T/stdout.vma" 2>"$T/create.err" ||
    fail "create - >file: $(cat "$T/create.err")"
expect_ok verify "$T/stdout.vma"
expect_ok list "$T/stdout.vma"
printf '%s\n' "$out" | grep -qx "DEV: dev_id=1 size: $((3 * 65536 + 12345)) devname: drive-scsi0" ||
    fail "list of create - >file: $out"
[ ! -e "$W/-" ] || fail "create - created a file named '-'"

# ---- a reader that goes away: a failure, not a hang, and nothing left behind -----------
truncate -s 64M "$I/big.raw"
head -c 8M /dev/urandom | dd of="$I/big.raw" conv=notrunc status=none
set +o pipefail
with_timeout 60 "$VMA" create - drive-scsi0="$I/big.raw" 2>"$T/create.err" | head -c 100 >/dev/null
rc=${PIPESTATUS[0]}
[ "$rc" = 1 ] || fail "create - into a closed pipe exited $rc (want 1): $(cat "$T/create.err")"
grep -q "standard output: Broken pipe" "$T/create.err" ||
    fail "create - into a closed pipe: $(cat "$T/create.err")"
[ -z "$(ls -A "$W")" ] || fail "create - left files in the current directory: $(ls -A "$W")"

# ---- a terminal on stdout is refused ----------------------------------------------------
if command -v script >/dev/null 2>&1; then
    cmd="$(printf '%q ' "$VMA" create - drive-scsi0="$I/a.raw"); echo rc=\$? >$(printf '%q' "$T/tty.rc")"
    with_timeout 30 script -qec "$cmd" /dev/null >"$T/tty.out" 2>&1 </dev/null
    grep -qx "rc=1" "$T/tty.rc" || fail "create - on a terminal: $(cat "$T/tty.rc" "$T/tty.out")"
    grep -q "vma: create: refusing to write the archive to a terminal" "$T/tty.out" ||
        fail "create - on a terminal: $(cat "$T/tty.out")"
    [ ! -e "$W/-" ] || fail "create - created a file named '-'"
else
    echo "note: script(1) missing, the terminal case is not tested"
fi
exit 0
