#!/usr/bin/env bash
# A restore map with CRLF line ends (written on Windows, or by a tool that sends CRLF):
# the \r is stripped from each line, so "0:drive-scsi0=T\r" restores into T, not into a
# file named "T\r", and "done\r" ends the map (docs/vma.1, -r).
. "$(dirname "$0")/lib.bash"

head -c 200000 /dev/urandom >"$T/a.raw"
head -c 70000 /dev/urandom >"$T/b.raw"
check "create" "$VMA" create "$T/src.vma" -d format=raw:drive-scsi0="$T/a.raw" \
    -d format=raw:drive-scsi1="$T/b.raw"
truncate -s 200000 "$T/t0.raw"
truncate -s 70000 "$T/t1.raw"

printf '0:drive-scsi0=%s\r\n1:drive-scsi1=%s\r\ndone\r\n' "$T/t0.raw" "$T/t1.raw" >"$T/map"
run_vma extract -r "$T/map" "$T/src.vma" "$T/out"
[ "$rc" -eq 0 ] || fail "CRLF map: exit $rc; $err"
cmp -s "$T/t0.raw" "$T/a.raw" || fail "CRLF map: drive-scsi0 not restored"
cmp -s "$T/t1.raw" "$T/b.raw" || fail "CRLF map: drive-scsi1 not restored"
[ -z "$(find "$T" -name $'*\r*')" ] || fail "a file with CR in its name: $(find "$T" -name $'*\r*')"
rm -rf "$T/out"

# the last line without its LF, and an option list, still lose the CR
truncate -s 0 "$T/t0.raw" && truncate -s 200000 "$T/t0.raw"
printf 'format=raw:0:drive-scsi0=%s\r\nskip=drive-scsi1\r' "$T/t0.raw" >"$T/map"
run_vma extract -r "$T/map" "$T/src.vma" "$T/out"
[ "$rc" -eq 0 ] || fail "CRLF map without last LF: exit $rc; $err"
cmp -s "$T/t0.raw" "$T/a.raw" || fail "CRLF map without last LF: wrong data"

# a CR anywhere else is still part of the line (and refused as a path that is not there)
rm -rf "$T/out"
printf '0:drive-scsi0=%s\rx\n' "$T/t0.raw" >"$T/map"
expect_fail "open target" extract -r "$T/map" "$T/src.vma" "$T/out"
echo PASS
