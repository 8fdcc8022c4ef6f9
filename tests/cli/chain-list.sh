#!/usr/bin/env bash
# `vma list` of delta archives: one CHAIN line (kind, base uuid, bitmap) before CTIME, and
# a "chain" object in --json; a full archive lists without either, exactly as before.
. "$(dirname "$0")/lib.bash"
. "$TESTDIR/chain-lib.bash"

printf 'conf\n' >"$T/qemu-server.conf"
head -c 150000 /dev/urandom >"$T/a.raw"
"$VMA" create -c "$T/qemu-server.conf" "$T/full.vma" -d "format=raw:drive-scsi0=$T/a.raw" ||
    fail "create"
U0=$(uuid_of "$T/full.vma")
"$MKDELTA" --ctime 1700000000 --base "$T/full.vma" --bitmap backup0 -c "$T/qemu-server.conf" \
    "$T/inc.vma" "drive-scsi0=$T/a.raw@1" >/dev/null || fail "mkdelta inc"
"$MKDELTA" --ctime 1700000000 --kind differential --base "$T/full.vma" "$T/diff.vma" \
    "drive-scsi0=$T/a.raw@none" >/dev/null || fail "mkdelta diff"

expect_ok list "$T/inc.vma"
want="CFG: size: 5 name: qemu-server.conf
CFG: size: 87 name: vmabackup-chain.conf
DEV: dev_id=1 size: 150000 devname: drive-scsi0
CHAIN: kind: incremental base: $U0 bitmap: backup0
CTIME: Tue Nov 14 22:13:20 2023"
[ "$out" = "$want" ] || fail "list inc.vma:
$out
want:
$want"

expect_ok list "$T/diff.vma"
want="CFG: size: 72 name: vmabackup-chain.conf
DEV: dev_id=1 size: 150000 devname: drive-scsi0
CHAIN: kind: differential base: $U0
CTIME: Tue Nov 14 22:13:20 2023"
[ "$out" = "$want" ] || fail "list diff.vma: $out"

expect_ok list --json "$T/inc.vma"
printf '%s' "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["chain"] == {"kind": "incremental", "base": sys.argv[1], "bitmap": "backup0"}, j
' "$U0" || fail "list --json inc.vma: $out"
expect_ok list --json "$T/diff.vma"
case "$out" in *'"chain": {"kind": "differential", "base": "'"$U0"'", "bitmap": null}}') ;;
*) fail "list --json diff.vma: $out" ;; esac

# the chain entry is an ordinary config to `vma config`
expect_ok config -c vmabackup-chain.conf "$T/inc.vma"
[ "$out" = "format: 1
kind: incremental
base: $U0
bitmap: backup0" ] || fail "config: $out"

# a full archive: no CHAIN line, no chain member
expect_ok list "$T/full.vma"
case "$out" in *CHAIN*) fail "full archive lists a CHAIN line: $out" ;; esac
[ "$(printf '%s\n' "$out" | wc -l)" -eq 3 ] || fail "full listing: $out"
expect_ok list --json "$T/full.vma"
case "$out" in *chain*) fail "full archive has a chain member: $out" ;; esac
exit 0
