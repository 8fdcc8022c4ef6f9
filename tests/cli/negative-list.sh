#!/usr/bin/env bash
# Header damage in the archives of tests/data/negative shows in list and config as well:
# exit status 1 and one line naming the problem.
. "$(dirname "$0")/lib.bash"

N=$TESTDATA/negative

expect_fail "checksum" list "$N/bad-hdr.vma"
expect_fail "checksum" config "$N/bad-hdr.vma"
expect_fail "header size" list "$N/noblob.vma"
exit 0
