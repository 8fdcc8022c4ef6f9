#!/usr/bin/env bash
# `vma verify --base`: a linked, complete chain (bases shuffled, compressed) verifies with
# exit 0 and a quiet stderr; -v prints the newest listing (with CHAIN) and one summary;
# --json says which archives and that the chain is complete. Without --base a delta
# archive is checked alone: exit 0 with a note that completeness needs its base, and a
# damaged delta archive still fails. A damaged base fails the chain.
. "$(dirname "$0")/lib.bash"
. "$TESTDIR/chain-lib.bash"

C=$T/c
mkdir "$C"
make_chain "$C" 4 3
zstd -q "$C/inc1.vma" -o "$C/inc1.vma.zst" || fail "zstd"
gzip -c "$C/full.vma" >"$C/full.vma.gz" || fail "gzip"
U3=$(uuid_of "$C/inc3.vma")

expect_ok verify --base "$C/inc2.vma" --base "$C/full.vma.gz" --base "$C/inc3.vma" \
    --base "$C/inc1.vma.zst" "$C/inc4.vma"
[ -z "$out" ] || fail "verify printed: $out"
expect_ok verify --base "$C/full.vma" "$C/diff4.vma"

expect_ok verify -v --base "$C/full.vma" --base "$C/inc1.vma" "$C/inc2.vma"
[ "$(printf '%s\n' "$out" | sed -n '/^CTIME: /q;p')" = "$("$VMA" list "$C/inc2.vma" | sed '/^CTIME: /d')" ] ||
    fail "verify -v listing: $out"
case "$out" in *"CHAIN: kind: incremental base: $(uuid_of "$C/inc1.vma") bitmap: backup0"*) ;;
*) fail "verify -v: no CHAIN line: $out" ;; esac
[ "$(printf '%s\n' "$out" | grep -c '^total bytes read ')" -eq 1 ] || fail "verify -v summary: $out"

expect_ok verify --json --base "$C/full.vma" --base "$C/inc1.vma" "$C/inc2.vma"
printf '%s' "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["ok"] is True and j["chain_complete"] is True, j
assert j["chain_archives"] == sys.argv[1:], (j["chain_archives"], sys.argv[1:])
assert j["chain"]["kind"] == "incremental" and j["chain"]["bitmap"] == "backup0", j
' "$(uuid_of "$C/inc2.vma")" "$(uuid_of "$C/inc1.vma")" "$(uuid_of "$C/full.vma")" ||
    fail "verify --json: $out"

# a full archive verifies exactly as before: no note, no chain members
expect_ok verify --json "$C/full.vma"
case "$out" in *chain*) fail "a full archive has chain members: $out" ;; esac

# alone: checked, exit 0, one note on stderr naming the base
run_vma verify "$C/inc4.vma"
[ "$rc" -eq 0 ] || fail "verify of a delta archive alone: exit $rc: $err"
[ "$err" = "vma: verify: $C/inc4.vma is a delta archive (incremental): checked alone; whether its chain is complete needs its base $U3 (give it with --base)" ] ||
    fail "verify alone: note: $err"
run_vma verify --json "$C/inc4.vma"
[ "$rc" -eq 0 ] || fail "verify --json alone: exit $rc"
printf '%s' "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["ok"] is True and j["chain_complete"] is False, j
' || fail "verify --json alone: $out"

# a damaged delta archive fails alone and in its chain: one flipped byte in an extent header
cp "$C/inc4.vma" "$T/bad4.vma"
hs=$(python3 -c 'import struct, sys; print(struct.unpack(">I", open(sys.argv[1], "rb").read()[56:60])[0])' "$T/bad4.vma")
printf '\x01' | dd of="$T/bad4.vma" bs=1 seek=$((hs + 100)) conv=notrunc status=none
expect_fail "checksum" verify "$T/bad4.vma"
cp "$C/inc2.vma" "$T/bad2.vma"
printf '\x01' | dd of="$T/bad2.vma" bs=1 seek=$((hs + 100)) conv=notrunc status=none
expect_fail "checksum" verify --base "$C/full.vma" --base "$C/inc1.vma" --base "$T/bad2.vma" \
    --base "$C/inc3.vma" "$C/inc4.vma"
exit 0
