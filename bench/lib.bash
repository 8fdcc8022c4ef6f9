# bench/lib.bash — pieces every benchmark script shares (sourced). The script defines
# die MESSAGE (print and exit 1) and log MESSAGE (print to stderr) before sourcing this file.

# bench_cache_modes: from CACHE (drop, warm or both; unset = both where the page cache can
# be dropped, else warm) and DROP (/proc/sys/vm/drop_caches), set the array `modes`.
bench_cache_modes() {
    if [ -z "${CACHE:-}" ]; then
        if [ -w "$DROP" ]; then CACHE=both; else CACHE=warm; fi
    fi
    case "$CACHE" in
        drop) modes=(drop) ;;
        warm) modes=(warm) ;;
        both) modes=(drop warm) ;;
        *) die "CACHE must be drop, warm or both" ;;
    esac
    if [ "$CACHE" != warm ] && ! [ -w "$DROP" ]; then
        die "CACHE=$CACHE needs a writable $DROP (root); use CACHE=warm"
    fi
}

# bench_scratch_dir NAME: create BENCH_TMPDIR, set `fstype` to its file system type and
# warn (as NAME) when that is memory, where timings would not reflect a disk.
bench_scratch_dir() {
    mkdir -p "$BENCH_TMPDIR"
    fstype=$(findmnt -n -o FSTYPE --target "$BENCH_TMPDIR" 2>/dev/null ||
        stat -f -c %T "$BENCH_TMPDIR")
    case "$fstype" in tmpfs|ramfs)
        echo "$1: warning: $BENCH_TMPDIR is $fstype: timings will not reflect a disk" >&2 ;;
    esac
}

# bench_stop PID [SIGNAL]: end a process this script started (SIGTERM unless given) and
# reap it; nothing if PID is empty or already gone.
bench_stop() {
    [ -n "$1" ] || return 0
    kill "-${2:-TERM}" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# bench_remove_work: remove the work dir WORK, or keep it (and say so, with the script's
# log) when KEEP=1.
bench_remove_work() {
    if [ "${KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}

# bench_traps FUNCTION: run FUNCTION at exit, and exit on INT and TERM (so it runs then).
bench_traps() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# bench_wait_for TEST PATH WHAT [TRIES]: wait (TRIES x 50 ms, default 1200) until
# `test TEST PATH` holds while DAEMON_PID lives; else print WORK/daemon.log and die.
bench_wait_for() {
    local i
    for ((i = 0; i < ${4:-1200}; i++)); do
        test "$1" "$2" && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$WORK/daemon.log" >&2 || true
    die "$3 did not start"
}

# median: the median of the numbers on standard input (separated by spaces or newlines);
# "nan" when there are none.
median() {
    tr ' ' '\n' | awk 'NF { v[n++] = $1 } END {
        if (n == 0) { print "nan"; exit }
        for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2 }'
}

# json_field NAME: the member NAME of the JSON object on standard input.
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
