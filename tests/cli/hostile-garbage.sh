#!/usr/bin/env bash
# Input that is no archive at all (empty, random bytes, an empty stdin, a missing file,
# gzip of zeros, a zstd magic followed by garbage): exit status 1 with one line.
. "$(dirname "$0")/lib.bash"

: >"$T/zero.vma"
expect_fail "" verify "$T/zero.vma"
head -c 100000 /dev/urandom >"$T/garbage.vma"
expect_fail "" list "$T/garbage.vma"
expect_fail "" verify - </dev/null
expect_fail "" list "$T/no-such-file.vma"
head -c 100000 /dev/zero | gzip -c >"$T/zeros.gz"
expect_fail "" verify "$T/zeros.gz"
printf '\x28\xb5\x2f\xfd garbage after a zstd magic' >"$T/badzstd.vma"
expect_fail "" verify "$T/badzstd.vma"
exit 0
