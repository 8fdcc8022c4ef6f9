#!/usr/bin/env bash
# tests/data/negative/bad-data.vma: a flipped payload byte that no reader can notice.
. "$(dirname "$0")/lib.bash"

N=$TESTDATA/negative

# bad-data.vma has one flipped payload byte. The format has no payload checksum, so no
# reader can notice: verify passes and extract succeeds with the wrong byte. This is a
# documented limitation (vma(1), BUGS), asserted here so that a change shows up.
expect_ok verify "$N/bad-data.vma"
expect_ok extract "$N/bad-data.vma" "$T/bad-data"
a=$(find "$T/bad-data" -name 'disk-*' | sort | head -n 1)
[ -n "$a" ] || fail "bad-data: nothing extracted"
exit 0
