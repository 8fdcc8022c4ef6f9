#!/bin/bash
# vma serve of a chain of delta archives: the newest incremental (or a differential)
# served with its bases as one disk equals the newest state, byte for byte and in its
# zero map; the bases may come in any order; a missing link, a foreign base and a delta
# without its bases are refused with their messages.
. "$(dirname "$0")/lib.bash"
. "$SRCDIR/tests/functional/vma-serve-lib.bash"
need_tools qemu-img nbdinfo nbdcopy python3
TESTDIR=$SRCDIR/tests/cli
. "$TESTDIR/chain-lib.bash"

C=$T/chain
mkdir -p "$C"
make_chain "$C" 3 7

check_state() {    # STEP: every export equals the disk images of STEP
    local dev size uri
    while read -r dev size; do
        uri="nbd+unix:///$dev?socket=$SERVE_SOCK"
        grep -qxF "$uri" "$T/uris" || fail "no export $dev: $(cat "$T/uris")"
        qemu-img compare -f raw -F raw "$C/s$1-$dev.raw" "$uri" >/dev/null ||
            fail "$dev differs from state $1"
        nbdcopy "$uri" "$T/copy.raw" && cmp "$T/copy.raw" "$C/s$1-$dev.raw" ||
            fail "$dev: nbdcopy differs from state $1"
        zero_map "$C/s$1-$dev.raw" "$size" >"$T/want.map"
        nbd_map "$uri" >"$T/got.map"
        diff "$T/want.map" "$T/got.map" || fail "$dev: map of state $1"
    done <"$C/devs"
}

bases=()
for b in $(shuffled full inc1 inc2); do bases+=(--base "$C/$b.vma"); done
start_serve "${bases[@]}" "$C/inc3.vma"
check_state 3
stop_serve

start_serve --base "$C/full.vma" "$C/diff2.vma"
check_state 2
stop_serve

start_serve --base "$C/inc1.vma" --base "$C/full.vma" "$C/inc2.vma"
check_state 2
stop_serve

# the full archive alone is state 0
start_serve "$C/full.vma"
check_state 0
stop_serve

u2=$(uuid_of "$C/inc2.vma")
serve_fails "$C/inc3.vma is incremental relative to archive $u2, which is not among the base archives given" \
    --base "$C/inc1.vma" --base "$C/full.vma" "$C/inc3.vma"
serve_fails "which is not among the base archives given" "$C/diff1.vma"
serve_fails "is not part of the chain" --base "$C/full.vma" --base "$C/inc1.vma" "$C/diff1.vma"
echo "PASS"
