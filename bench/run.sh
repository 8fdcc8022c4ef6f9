#!/usr/bin/env bash
# `make bench`: run every bench/*-bench.sh in turn; stop at the first that fails.
# Each script reads its own settings from the environment (see its header).
set -eu
cd "$(dirname "$0")"
for b in ./*-bench.sh; do
    [ -e "$b" ] || continue
    echo "== $b"
    bash "$b"
done
