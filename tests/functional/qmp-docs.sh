#!/usr/bin/env bash
# docs/qmp-reference.md is generated from qapi-schema.json (make docs) and committed:
# it must be up to date.
. "$(dirname "$0")/../lib.bash"
requires python3

out=$T/qmp-reference.md
python3 "$SRCDIR/scripts/qapi-doc.py" "$SRCDIR/qapi-schema.json" >"$out" || exit 1
if ! diff -u "$SRCDIR/docs/qmp-reference.md" "$out"; then
    fail "docs/qmp-reference.md is out of date: run 'make docs' and commit it"
fi
echo "PASS"
