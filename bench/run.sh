#!/usr/bin/env bash
# `make bench`: run every bench/*-bench.sh in turn (each reads its settings from the
# environment, see its header); exit non-zero if any of them failed.
set -u
cd "$(dirname "$0")" || exit 1
failed=()
for b in ./*-bench.sh; do
    [ -e "$b" ] || continue
    echo "== $b"
    bash "$b" || failed+=("$b")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
