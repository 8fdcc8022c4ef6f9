#!/usr/bin/env bash
# Run the fuzz harnesses built by `make fuzz-build` (libFuzzer) or `make fuzz-afl` (AFL++).
#
#   tests/fuzz/run.sh fuzz    [NAME...]  fuzz each harness for FUZZ_SECONDS on a copy of its
#                                        seeds and reproducers in FUZZ_CORPUS_RUN/NAME (kept
#                                        between runs: later runs start where earlier ones
#                                        stopped); FUZZ_JOBS harnesses at a time
#   tests/fuzz/run.sh regress [NAME...]  run each harness once over tests/fuzz/corpus/NAME/
#                                        and tests/fuzz/regress/NAME/ (no fuzzing)
#   tests/fuzz/run.sh afl     [NAME...]  fuzz with afl-fuzz for FUZZ_SECONDS each
#                                        (AFL_BUILDDIR, output in AFL_BUILDDIR/afl-out/NAME)
#
# NAME is the part of tests/fuzz/fuzz-NAME.c after "fuzz-"; no NAME means every harness.
# Exit status 0 when every harness ran without a finding, 1 otherwise. A finding is left
# in FUZZ_BUILDDIR/artifacts/NAME/ (crash-*, leak-*, timeout-*, oom-*): once fixed, it
# belongs in tests/fuzz/regress/NAME/.
set -u
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ_BUILDDIR=${FUZZ_BUILDDIR:-$SRCDIR/build-fuzz}
AFL_BUILDDIR=${AFL_BUILDDIR:-$SRCDIR/build-afl}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}
FUZZ_CORPUS_RUN=${FUZZ_CORPUS_RUN:-$FUZZ_BUILDDIR/corpus-run}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export G_SLICE=always-malloc

mode=${1:-}
shift || true
case $mode in
fuzz | regress | afl) ;;
*)
    echo "usage: $0 fuzz|regress|afl [NAME...]" >&2
    exit 2
    ;;
esac

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$SRCDIR"/tests/fuzz/fuzz-*.c; do
        n=${f##*/fuzz-}
        names+=("${n%.c}")
    done
fi

# Per-harness options: the input length bound, and what an input may cost.
# Every harness: a hang of 20 s is a finding, and so is a single allocation over 160 MiB
# (the largest legitimate ones are a 64 MiB lzop block and NBD's 32 MiB payloads).
max_len() {
    case $1 in
    reader | reader-sums) echo 65536 ;;   # a header and a few extents, or compressed more
    nbd | qmp-*) echo 8192 ;;
    *) echo 4096 ;;
    esac
}
run_opts() {
    local o="-timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=160"
    case $1 in
    # leaks are checked by replaying the corpus in a standalone ASan build (fuzz-nbd.c);
    # a few hundred inputs a second: start at the full length instead of growing to it
    nbd) o+=" -detect_leaks=0 -len_control=0" ;;
    esac
    echo "$o"
}
dict_for() {
    case $1 in
    qmp-*) echo "$SRCDIR/tests/fuzz/dict/qmp.dict" ;;
    esac
}

inputs_of() {
    local d
    for d in "$SRCDIR/tests/fuzz/corpus/$1" "$SRCDIR/tests/fuzz/regress/$1"; do
        [ -d "$d" ] && find "$d" -type f ! -name '.*' ! -name 'README*' | sort
    done
}

logdir=$FUZZ_BUILDDIR/logs
mkdir -p "$logdir"

# ---- one harness, libFuzzer -----------------------------------------------------------
fuzz_one() {
    local name=$1 bin=$FUZZ_BUILDDIR/fuzz/fuzz-$1 log=$logdir/$1.log
    local corpus=$FUZZ_CORPUS_RUN/$1 art=$FUZZ_BUILDDIR/artifacts/$1/ dict rc
    mkdir -p "$corpus" "$art"
    inputs_of "$name" | while read -r f; do cp -n "$f" "$corpus/" 2>/dev/null; done
    dict=$(dict_for "$name")
    # the nbd harness's leaks are checked by replaying its corpus (regress), not at the
    # end of a fuzzing run, whose exit can catch the server's threads mid-request
    local san=$ASAN_OPTIONS
    [ "$name" != nbd ] || san="$ASAN_OPTIONS:detect_leaks=0"
    # shellcheck disable=SC2046
    ASAN_OPTIONS=$san "$bin" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$name")" \
        $(run_opts "$name") ${dict:+-dict="$dict"} -print_final_stats=1 \
        -artifact_prefix="$art" "$corpus" >"$log" 2>&1
    rc=$?
    echo $rc >"$logdir/$name.rc"
}

summary_line() {
    local name=$1 log=$logdir/$1.log rc last execs eps cov ft corp
    rc=$(cat "$logdir/$name.rc" 2>/dev/null || echo 1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
    if [ "$rc" -eq 0 ]; then
        printf '%-14s %6ss %12s execs %8s/s  cov %6s  ft %6s  corpus %-12s OK\n' \
            "$name" "$FUZZ_SECONDS" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
        return 0
    fi
    printf '%-14s FAILED (exit %s) after %s execs; log %s\n' "$name" "$rc" "${execs:-?}" "$log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written|.*runtime error)' \
        "$log" | head -n 8 | sed 's/^/    /'
    return 1
}

# ---- one harness, AFL++ ---------------------------------------------------------------
afl_one() {
    local name=$1 bin=$AFL_BUILDDIR/fuzz/fuzz-$1 log=$logdir/afl-$1.log
    local in out=$AFL_BUILDDIR/afl-out/$1 dict rc
    in=$(mktemp -d)
    inputs_of "$name" | while read -r f; do cp "$f" "$in/"; done
    [ -n "$(ls -A "$in")" ] || echo seed >"$in/empty"
    dict=$(dict_for "$name")
    mkdir -p "$out"
    AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_NO_AFFINITY=1 ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0 \
        afl-fuzz -V "$FUZZ_SECONDS" -t 20000 ${dict:+-x "$dict"} -i "$in" -o "$out" \
        -- "$bin" >"$log" 2>&1
    rc=$?
    rm -rf "$in"
    local stats=$out/default/fuzzer_stats crashes
    crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
    if [ $rc -ne 0 ] || [ ! -f "$stats" ]; then
        echo "$name: afl-fuzz failed (exit $rc); log $log"
        tail -n 5 "$log" | sed 's/^/    /'
        return 1
    fi
    printf '%-14s %6ss %12s execs %8s/s  edges %s  corpus %s  crashes %s\n' "$name" \
        "$FUZZ_SECONDS" "$(sed -n 's/^execs_done *: *//p' "$stats")" \
        "$(sed -n 's/^execs_per_sec *: *//p' "$stats")" \
        "$(sed -n 's/^edges_found *: *//p' "$stats")" \
        "$(sed -n 's/^corpus_count *: *//p' "$stats")" "$crashes"
    [ "$crashes" -eq 0 ]
}

failed=0
case $mode in
regress)
    for name in "${names[@]}"; do
        bin=$FUZZ_BUILDDIR/fuzz/fuzz-$name
        mapfile -t files < <(inputs_of "$name")
        if [ ${#files[@]} -eq 0 ]; then
            echo "regress $name: no inputs"
            continue
        fi
        # shellcheck disable=SC2046
        if "$bin" $(run_opts "$name") "${files[@]}" >"$logdir/regress-$name.log" 2>&1; then
            printf 'regress %-14s %4d inputs OK\n' "$name" ${#files[@]}
        else
            printf 'regress %-14s FAILED; log %s\n' "$name" "$logdir/regress-$name.log"
            grep -E '^(Running:|==[0-9]+==ERROR|SUMMARY|.*runtime error)' \
                "$logdir/regress-$name.log" | tail -n 6 | sed 's/^/    /'
            failed=1
        fi
    done
    ;;
fuzz)
    for name in "${names[@]}"; do
        rm -f "$logdir/$name.rc"
        if [ ! -x "$FUZZ_BUILDDIR/fuzz/fuzz-$name" ]; then
            echo "$name: $FUZZ_BUILDDIR/fuzz/fuzz-$name not built (make fuzz-build)" >&2
            exit 1
        fi
    done
    echo "fuzzing ${names[*]}: ${FUZZ_SECONDS}s each, $FUZZ_JOBS at a time"
    for name in "${names[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do
            wait -n
        done
        fuzz_one "$name" &
    done
    wait
    for name in "${names[@]}"; do
        summary_line "$name" || failed=1
    done
    ;;
afl)
    if ! command -v afl-fuzz >/dev/null 2>&1; then
        echo "afl-fuzz not found (Debian: afl++)" >&2
        exit 1
    fi
    for name in "${names[@]}"; do
        afl_one "$name" || failed=1
    done
    ;;
esac
exit $failed
