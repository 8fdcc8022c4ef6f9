# bench/lib.bash — pieces every benchmark script shares (sourced). The script defines
# die MESSAGE (print and exit 1) before sourcing this file.

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
