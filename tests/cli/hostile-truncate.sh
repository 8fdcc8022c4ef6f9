#!/usr/bin/env bash
# The reference archive cut at 25 random offsets: verify and extract end with exit
# status 1 and one line of explanation, never a signal; extract leaves no file.
. "$(dirname "$0")/lib.bash"

src=$TESTDATA/ref-2dev.vma
size=$(stat -c %s "$src")
RANDOM=4242
for i in $(seq 1 25); do
    cut=$(((RANDOM * 32768 + RANDOM) % size))
    head -c "$cut" "$src" >"$T/trunc.vma"
    for cmd in verify extract; do
        rm -rf "$T/xt"
        args=("$T/trunc.vma")
        [ "$cmd" = extract ] && args+=("$T/xt")
        run_vma "$cmd" "${args[@]}"
        [ "$rc" -eq 1 ] || fail "$cmd of a copy cut at $cut: exit $rc: $err"
        [ -n "$err" ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] ||
            fail "$cmd cut at $cut: stderr '$err'"
        if [ -d "$T/xt" ]; then
            [ -z "$(find "$T/xt" -type f)" ] || fail "extract cut at $cut left files"
        fi
    done
done
exit 0
