#!/usr/bin/env bash
# tests/valgrind/run-valgrind.sh — `make check-valgrind`: the unit tests and the CLI tests
# under valgrind's memcheck, over the normal build ($BUILDDIR).
#
# tests/run.sh runs $BUILDDIR/tests/unit/test-* and the tests run "$VMA" as one word, so
# we give it a BUILDDIR of wrappers: $BUILDDIR/valgrind/{vma,tests/unit/test-*} are
# scripts that exec valgrind on the real program. Every process writes its report to a
# file of its own (--log-file), so the exact stdout/stderr the golden CLI tests compare
# is unchanged; an error (invalid access, uninitialised value, a definite leak, an
# invalid free) makes the program exit 99, which fails its test, and the run fails if any
# report holds an error even where a test ignores an exit status.
#
# VALGRIND_TESTS (default "unit/ cli/") selects tests as TESTS does for tests/run.sh.
# The Makefile builds with -DVMA_SANITIZED (cluster buffers on the heap, see vma-common.c).
set -u
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
: "${BUILDDIR:?BUILDDIR must name the build to check}"
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
W=$BUILDDIR/valgrind
logs=$W/logs
rm -rf "$W"
mkdir -p "$W/tests/unit" "$logs" || exit 1

# glib: plain malloc for GSlice, and memory cleared on free, so that what glib caches
# for the process's lifetime is "still reachable" and a leak of ours is "definite".
export G_SLICE=always-malloc G_DEBUG=gc-friendly
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=30 --child-silent-after-fork=yes
    --trace-children=no --suppressions="$SRCDIR/tests/valgrind/suppressions.txt")

wrap() {        # wrap WRAPPER PROGRAM
    {
        echo '#!/bin/sh'
        printf 'exec'
        printf ' %q' "${VG[@]}"
        printf ' --log-file=%q' "$logs/$(basename "$2").%p"
        printf ' %q "$@"\n' "$2"
    } >"$1"
    chmod +x "$1"
}
wrap "$W/vma" "$BUILDDIR/vma"
for t in "$BUILDDIR"/tests/unit/test-*; do
    [ -x "$t" ] || continue
    wrap "$W/tests/unit/$(basename "$t")" "$t"
done

# The options catch a definite leak (and nothing in a clean program).
${CC:-cc} -std=c11 -g -O0 -o "$W/selftest" "$SRCDIR/tests/valgrind/selftest.c" || exit 1
if ! "${VG[@]}" --log-file="$W/selftest.log" "$W/selftest" >/dev/null; then
    cat "$W/selftest.log"
    echo "FAIL valgrind self-test: errors in a clean program"
    exit 1
fi
"${VG[@]}" --log-file="$W/selftest.log" "$W/selftest" leak >/dev/null
if [ $? -ne 99 ] || ! grep -q 'definitely lost' "$W/selftest.log"; then
    echo "FAIL valgrind self-test: a definite leak went unnoticed"
    exit 1
fi
echo "PASS valgrind self-test (a definite leak fails)"

rc=0
BUILDDIR=$W TESTS=${VALGRIND_TESTS:-"unit/ cli/"} "$SRCDIR/tests/run.sh" || rc=$?
bad=0
for f in "$logs"/*; do
    [ -s "$f" ] || continue
    bad=$((bad + 1))
    echo "--- valgrind report $f"
    head -n 80 "$f"
done
if [ $bad -gt 0 ]; then
    echo "valgrind: $bad process(es) reported errors (logs in $logs)"
    rc=1
fi
exit $rc
