#!/usr/bin/env bash
# A restore-map line longer than 64 KiB is refused without reading it into memory
# (docs/security.md, "Limits").
. "$(dirname "$0")/limits.bash"

printf 'memory: 1\n' >"$T/c.conf"
head -c 70000 /dev/urandom >"$T/d.raw"
"$VMA" create -c "$T/c.conf" "$T/small.vma" drive-scsi0="$T/d.raw" || fail "create"
mkfifo "$T/map"
# 64 MiB without a newline: read into memory whole, this would show in the peak
( head -c $((64 << 20)) /dev/zero | tr '\0' a >"$T/map" ) 2>/dev/null &
writer=$!
read -r rc kib < <(peak_kib "$VMA" extract -r "$T/map" "$T/small.vma" "$T/x")
kill "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
[ "$rc" = 1 ] || fail "extract with a long map line exited $rc: $(cat "$T/cmd.out")"
echo "extract with a 64 MiB map line: peak $((kib / 1024)) MiB"
grep -q 'line 1: longer than 65536 bytes' "$T/cmd.out" || fail "long map line: $(cat "$T/cmd.out")"
if [ $plain_build = 1 ] && [ "$kib" -gt $((32 * 1024)) ]; then
    fail "extract with a long map line peaked at $((kib / 1024)) MiB"
fi
echo PASS
