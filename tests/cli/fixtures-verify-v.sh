#!/usr/bin/env bash
# `vma verify -v` of the archives written by the deployed Proxmox tool (tests/data): the
# listing, the progress lines and the summary; a diskless archive; a disk smaller than
# one cluster (the deployed tool divides by zero there).
. "$(dirname "$0")/fixtures.bash"

expect_ok verify -v "$D/ref-2dev.vma"
[ "$(printf '%s\n' "$out" | head -n 5)" = "$want_2dev" ] || fail "verify -v listing: $out"
printf '%s\n' "$out" | grep -Eq '^progress 100% \(read 1703936 bytes, duration [0-9]+ sec\)$' ||
    fail "verify -v: no 100% progress line: $out"
# 26 records of 64 KiB; zero blocks: a.raw and b.raw's (sector-rounded) zero blocks
printf '%s\n' "$out" | grep -Eq '^total bytes read 1703936, sparse bytes [0-9]+ \([0-9.e+]+%\)$' ||
    fail "verify -v: no summary line: $out"
printf '%s\n' "$out" | grep -Eq '^space reduction due to 4K zero blocks [0-9.e+-]+%$' ||
    fail "verify -v: no space reduction line: $out"
[ "$(printf '%s\n' "$out" | grep -c '^progress ')" -le 100 ] || fail "too many progress lines"
expect_ok verify -v "$D/ref-nodisk.vma"
[ "$(printf '%s\n' "$out" | tail -n 1)" = "vma archive contains no image data" ] ||
    fail "verify -v of a diskless archive: $out"
# a disk smaller than one cluster (the deployed tool divides by zero here)
expect_ok verify -v "$D/tiny.vma"
printf '%s\n' "$out" | grep -q '^progress 100% (read 65536 bytes' || fail "tiny verify -v: $out"
exit 0
