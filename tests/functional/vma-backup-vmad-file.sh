#!/usr/bin/env bash
# `vma backup` against a real vmad to a file given by a relative path, with a config and a
# firewall file: the archive verifies, lists both writable disks, holds the configs and
# extracts to the images; stderr has vzdump's lines (start, progress, sparse,
# transferred) and nothing else, without \r when stderr is no terminal.
. "$(dirname "$0")/vma-backup-vmad.bash"

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
quit_vmad
echo PASS
