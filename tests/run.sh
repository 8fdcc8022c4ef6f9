#!/usr/bin/env bash
# Test runner for `make check`: every cmocka unit program, then every shell test under
# tests/cli/ and tests/functional/. A shell test passes with exit 0, is skipped with
# exit 77 (after printing why), and fails otherwise. In CI (CI=true) a skip counts as
# a failure: the install step provides every tool the tests use.
#
# Environment for the tests: BUILDDIR (absolute), SRCDIR (the repo), VMA, VMAD, TESTDATA.
# TESTS="pattern ..." limits the run to tests whose path contains one of the patterns.
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
export SRCDIR BUILDDIR
export VMA="$BUILDDIR/vma" VMAD="$BUILDDIR/vmad" TESTDATA="$SRCDIR/tests/data"
export TZ=UTC LC_ALL=C
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=99:abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:exitcode=99}
export G_SLICE=always-malloc G_DEBUG=gc-friendly
cd "$SRCDIR" || exit 1

pass=0 fail=0 skip=0
failed=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/vmatest-logs.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

selected() {
    [ -z "${TESTS:-}" ] && return 0
    local p
    for p in $TESTS; do
        case "$1" in *"$p"*) return 0 ;; esac
    done
    return 1
}

run_one() {
    local name=$1; shift
    selected "$name" || return 0
    local log="$logdir/$(echo "$name" | tr '/' '_').log" start end rc
    start=$(date +%s)
    "$@" >"$log" 2>&1 </dev/null
    rc=$?
    end=$(date +%s)
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS %-48s %3ss\n' "$name" $((end - start))
    elif [ $rc -eq 77 ]; then
        if [ "${CI:-}" = true ]; then
            fail=$((fail + 1)); failed+=("$name")
            printf 'FAIL %-48s (skipped in CI: %s)\n' "$name" "$(tail -n 1 "$log")"
        else
            skip=$((skip + 1)); printf 'SKIP %-48s %s\n' "$name" "$(tail -n 1 "$log")"
        fi
    else
        fail=$((fail + 1)); failed+=("$name")
        printf 'FAIL %-48s exit %d\n' "$name" $rc
        sed 's/^/    | /' "$log" | tail -n 60
    fi
}

for t in "$BUILDDIR"/tests/unit/test-*; do
    [ -x "$t" ] || continue
    run_one "unit/$(basename "$t")" "$t"
done
for t in tests/cli/*.sh tests/functional/*.sh; do
    [ -f "$t" ] || continue
    run_one "${t#tests/}" bash "$t"
done

echo
if [ $fail -gt 0 ]; then
    echo "failed: ${failed[*]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $((pass + skip)) -gt 0 ]
