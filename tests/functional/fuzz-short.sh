#!/usr/bin/env bash
# make check's short fuzzing run: build every libFuzzer harness (make fuzz-build, in
# build-fuzz/, incremental), replay every seed and crash reproducer (make fuzz-regress),
# then fuzz each harness for FUZZ_SHORT_SECONDS (default 15), two at a time, on a
# throw-away copy of its seeds. Any crash, sanitizer report, leak, timeout or oversized
# allocation fails the test; the input that caused it stays in build-fuzz/artifacts/NAME/.
# Longer runs: make fuzz FUZZ_SECONDS=N (docs/fuzzing.md).
. "$(dirname "$0")/../lib.bash"
# the Makefile's default (relative) unless given: one spelling, so dependencies match
make_dir=()
[ -n "${FUZZ_BUILDDIR:-}" ] && make_dir=(FUZZ_BUILDDIR="$FUZZ_BUILDDIR")
FUZZ_BUILDDIR=${FUZZ_BUILDDIR:-$SRCDIR/build-fuzz}
seconds=${FUZZ_SHORT_SECONDS:-15}

requires clang

# A make of our own: not the jobserver or the variables of the make running the tests.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        make -C "$SRCDIR" -j2 "${make_dir[@]}" fuzz-build >"$T/build.log" 2>&1; then
    tail -n 30 "$T/build.log"
    echo "make fuzz-build failed"
    exit 1
fi

export FUZZ_BUILDDIR
rc=0
"$SRCDIR/tests/fuzz/run.sh" regress || rc=1
FUZZ_SECONDS=$seconds FUZZ_JOBS=2 FUZZ_CORPUS_RUN="$T/corpus" \
    "$SRCDIR/tests/fuzz/run.sh" fuzz || rc=1
exit $rc
