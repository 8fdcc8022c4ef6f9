#!/usr/bin/env bash
# tests/tsan/run-tsan.sh — `make check-tsan`: tests/run.sh over a ThreadSanitizer build
# (BUILDDIR, TESTS from the Makefile), with every report of every process (unit tests,
# vmad, vma) written to a file of its own, so that a report fails the run even where a
# test does not look at a process's stderr or exit status.
set -u
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
: "${BUILDDIR:?BUILDDIR must name the ThreadSanitizer build}"
reports=$BUILDDIR/tsan-reports
rm -rf "$reports"
mkdir -p "$reports" || exit 1
# halt_on_error=0: a process goes on after a report (and exits 99 at its end), so one
# race does not hide the next; second_deadlock_stack: both stacks of a lock inversion.
export TSAN_OPTIONS="halt_on_error=0 exitcode=99 second_deadlock_stack=1 suppressions=$SRCDIR/tests/tsan/suppressions.txt log_path=$reports/tsan ${TSAN_OPTIONS:-}"
rc=0

# The annotations work (no report for glib-locked data) and races are caught.
self=$BUILDDIR/tests/tsan-selftest
mkdir -p "$BUILDDIR/tests"
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -g -O1 -fsanitize=thread -include "$SRCDIR/tests/tsan/tsan-glib.h" \
    $(pkg-config --cflags glib-2.0) -o "$self" "$SRCDIR/tests/tsan/selftest.c" \
    $(pkg-config --libs glib-2.0) || exit 1
if ! TSAN_OPTIONS="exitcode=99 log_path=stderr" "$self" 2>"$BUILDDIR/tests/tsan-selftest.log"; then
    cat "$BUILDDIR/tests/tsan-selftest.log"
    echo "FAIL tsan self-test: a report about data protected by a GMutex"
    exit 1
fi
if TSAN_OPTIONS="exitcode=99 log_path=stderr" "$self" race 2>"$BUILDDIR/tests/tsan-selftest.log" ||
    ! grep -q 'WARNING: ThreadSanitizer: data race' "$BUILDDIR/tests/tsan-selftest.log"; then
    echo "FAIL tsan self-test: the deliberate race was not reported"
    exit 1
fi
echo "PASS tsan self-test (annotated glib locks, a deliberate race is caught)"

BUILDDIR=$BUILDDIR "$SRCDIR/tests/run.sh" || rc=$?
if compgen -G "$reports/tsan*" >/dev/null; then
    echo
    echo "ThreadSanitizer reports (in $reports):"
    for f in "$reports"/tsan*; do
        echo "--- $f"
        head -n 60 "$f"
    done
    rc=1
fi
exit $rc
