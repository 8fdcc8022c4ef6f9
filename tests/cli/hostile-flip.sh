#!/usr/bin/env bash
# The reference archive with one bit flipped at 40 random offsets (most in the header and
# the first extent headers): list and verify end with exit status 0 or 1, never a signal,
# and a failure has a message.
. "$(dirname "$0")/lib.bash"

src=$TESTDATA/ref-2dev.vma
size=$(stat -c %s "$src")
# the offsets hostile.sh used: its random sequence after the 25 cuts of hostile-truncate.sh
RANDOM=4242
for _ in $(seq 1 50); do
    : $RANDOM
done
for i in $(seq 1 40); do
    cp "$src" "$T/flip.vma"
    # the header (12288 + blobs) and the first extent headers are the interesting part
    off=$(((RANDOM * 32768 + RANDOM) % 20000))
    if [ $((i % 4)) -eq 0 ]; then
        off=$(((RANDOM * 32768 + RANDOM) % size))
    fi
    byte=$(od -An -tu1 -j "$off" -N1 "$T/flip.vma" | tr -d ' ')
    printf "$(printf '\\%03o' $(((byte ^ (1 << (RANDOM % 8))) & 255)))" |
        dd of="$T/flip.vma" bs=1 seek="$off" conv=notrunc status=none
    for cmd in list verify; do
        run_vma "$cmd" "$T/flip.vma"
        [ "$rc" -le 1 ] || fail "$cmd with a bit flipped at $off: exit $rc: $err"
        if [ "$rc" -eq 1 ]; then
            [ -n "$err" ] || fail "$cmd flip at $off: failed without a message"
        fi
    done
done
exit 0
