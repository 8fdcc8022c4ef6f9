#!/usr/bin/env bash
# docs/qmp-reference.md is generated from qapi-schema.json (make docs) and committed:
# it must be up to date.
set -u
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is not installed"; exit 77; }

out=$(mktemp "${TMPDIR:-/tmp}/qmp-reference.XXXXXX")
trap 'rm -f "$out"' EXIT
python3 "$SRCDIR/scripts/qapi-doc.py" "$SRCDIR/qapi-schema.json" >"$out" || exit 1
if ! diff -u "$SRCDIR/docs/qmp-reference.md" "$out"; then
    echo "FAIL: docs/qmp-reference.md is out of date: run 'make docs' and commit it" >&2
    exit 1
fi
echo "PASS"
