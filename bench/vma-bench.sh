#!/usr/bin/env bash
# vma-bench.sh — benchmark `vma create / verify / extract` against the tools people would
# otherwise use on the same disk image, in the same run.
#
# The image is SIZE bytes laid out in CHUNK-sized pieces repeating the pattern
#   random, random, zeros written to disk, hole
# i.e. half random data, a quarter allocated zero clusters, a quarter holes. The random
# bytes come from AES-128-CTR of /dev/zero (`openssl enc`, fixed key and iv), so every
# run on every machine benchmarks the same bytes; python3 lays out the pieces.
#
# Rows (each RUNS times, interleaved per run so that machine noise hits every row alike):
#   vma create -> file (+ sync)        peer: cp --sparse=always (+ sync)
#   vma create -> exec:cat >/dev/null  peer: cp --sparse=always (+ sync)
#   vma verify
#   vma extract (+ sync)               peer: cp --sparse=always of the extracted disk (+ sync)
#   cp --sparse=always of the extracted disk (+ sync)
#   cp --sparse=always (+ sync)
#   qemu-img convert -O raw (+ sync)
#   zstd -T2 -1 (+ sync)
# Every row that writes a file includes a `sync` in its time. Wall time and peak RSS come
# from /usr/bin/time (%e, %M: the largest RSS of the command and the children it waited
# for). A ratio is vma's median time divided by the peer's: <= 1.00 meets the target.
#
# CACHE=drop drops the page cache before every timed command; CACHE=warm reads the input
# into the cache first instead; CACHE=both (the default when /proc/sys/vm/drop_caches is
# writable, else warm) does both, one table each. The extracted disk is compared with the image
# once (cmp), and every command must succeed, or the benchmark fails.
#
# Environment:
#   SIZE=4G        image size (suffixes K M G T, binary)
#   RUNS=3         runs per row; the table shows medians
#   CHUNK=1M       layout granularity
#   CACHE=...      drop | warm | both (see above)
#   BIN=...        the vma binary to bench (default $BUILDDIR/vma)
#   BENCH_TMPDIR=  where the work dir is created (default $BUILDDIR: same filesystem as
#                  the build tree; never tmpfs unless you ask for it)
#   BIG_SIZE=64G   size of a second, almost empty sparse image (1 MiB of data per GiB)
#                  run once through vma create / verify / extract to show that peak RSS
#                  does not grow with the image; 0 skips it
#   KEEP=1         keep the work dir (prints its path)
set -euo pipefail
export LC_ALL=C

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
BIN=${BIN:-$BUILDDIR/vma}
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
CHUNK=${CHUNK:-1M}
BENCH_TMPDIR=${BENCH_TMPDIR:-$BUILDDIR}
BIG_SIZE=${BIG_SIZE:-64G}
TIME=/usr/bin/time
DROP=/proc/sys/vm/drop_caches

die() { echo "vma-bench: $*" >&2; exit 1; }
. "$(dirname "$0")/lib.bash"

to_bytes() {
    local v=$1 n
    case "$v" in
        *[Kk]) n=${v%?}; echo $((n << 10)) ;;
        *[Mm]) n=${v%?}; echo $((n << 20)) ;;
        *[Gg]) n=${v%?}; echo $((n << 30)) ;;
        *[Tt]) n=${v%?}; echo $((n << 40)) ;;
        *[!0-9]*|'') die "bad size '$v'" ;;
        *) echo "$v" ;;
    esac
}

size_bytes=$(to_bytes "$SIZE")
big_bytes=$(to_bytes "$BIG_SIZE")
chunk_bytes=$(to_bytes "$CHUNK")
[ "$size_bytes" -gt 0 ] || die "SIZE must be > 0"
if [ "$chunk_bytes" -lt 4096 ] || [ $((chunk_bytes % 4096)) -ne 0 ]; then
    die "CHUNK must be a multiple of 4096"
fi
case "$RUNS" in ''|*[!0-9]*|0) die "RUNS must be a positive integer" ;; esac

[ -x "$TIME" ] || die "$TIME is missing (Debian package 'time'; scripts/install-deps.sh installs it)"
[ -x "$BIN" ] || die "no vma binary at $BIN (run make, or set BIN=)"
for t in cp cmp sync qemu-img zstd openssl python3; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (scripts/install-deps.sh)"
done

bench_cache_modes
bench_scratch_dir vma-bench
# Image (3/4 allocated) + archive + extracted disk + one copy at a time.
need_kib=$((size_bytes * 3 / 1024))
avail_kib=$(df -Pk "$BENCH_TMPDIR" | awk 'NR == 2 { print $4 }')
[ "$avail_kib" -ge "$need_kib" ] ||
    die "$BENCH_TMPDIR has $((avail_kib >> 20)) GiB free, about $((need_kib >> 20)) GiB needed"

WORK=$(mktemp -d "$BENCH_TMPDIR/vma-bench.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "vma-bench: work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
IMG=$WORK/image.raw
ARCH=$WORK/image.vma
EXDIR=$WORK/extract
OUT=$WORK/out

# ---- the image ------------------------------------------------------------------------

echo "vma-bench: writing a $SIZE image ($CHUNK pieces: random, random, zeros, hole) ..." >&2
"$SRCDIR/bench/mkimage.sh" "$size_bytes" "$IMG" "$chunk_bytes" || die "image generation failed"
[ "$(stat -c %s "$IMG")" -eq "$size_bytes" ] || die "image generation failed"
sync

# ---- measuring ------------------------------------------------------------------------

declare -A T R     # "mode|row" -> space-separated seconds / peak RSS KiB, one per run
rows=()
declare -A seen_row

# measure MODE ROW SYNC INPUT CMD...: time CMD (followed by sync when SYNC=1) after
# preparing the cache for INPUT (the file the command reads).
measure() {
    local mode=$1 row=$2 dosync=$3 input=$4; shift 4
    sync
    if [ "$mode" = warm ]; then
        cat "$input" >/dev/null
    elif [ -w "$DROP" ]; then
        echo 3 >"$DROP"
    fi
    local tf=$WORK/time.out
    if [ "$dosync" = 1 ]; then
        "$TIME" -f '%e %M' -o "$tf" sh -c '"$@" && sync' sh "$@" >"$WORK/cmd.log" 2>&1 ||
            { cat "$WORK/cmd.log" >&2; die "$row failed: $*"; }
    else
        "$TIME" -f '%e %M' -o "$tf" "$@" >"$WORK/cmd.log" 2>&1 ||
            { cat "$WORK/cmd.log" >&2; die "$row failed: $*"; }
    fi
    local secs kib
    read -r secs kib <"$tf" || die "cannot read $tf"
    T["$mode|$row"]+="$secs "
    R["$mode|$row"]+="$kib "
    if [ -z "${seen_row[$row]:-}" ]; then
        seen_row[$row]=1
        rows+=("$row")
    fi
    printf 'vma-bench: %-5s %-45s %7.2f s %8d KiB\n' "$mode" "$row" "$secs" "$kib" >&2
}

median() {
    tr ' ' '\n' | awk 'NF { v[n++] = $1 } END {
        if (n == 0) { print "nan"; exit }
        # insertion sort: n is small
        for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2 }'
}
maxof() { tr ' ' '\n' | awk 'NF && $1 > m { m = $1 } END { print m + 0 }'; }

R_CREATE="vma create → file (+ sync)"
R_EXEC="vma create → exec:cat >/dev/null"
R_VERIFY="vma verify"
R_EXTRACT="vma extract (+ sync)"
R_CPEX="cp --sparse=always of the extracted disk (+ sync)"
R_CP="cp --sparse=always (+ sync)"
R_QEMU="qemu-img convert -O raw (+ sync)"
R_ZSTD="zstd -T2 -1 (+ sync)"

declare -A PEER=(
    ["$R_CREATE"]=$R_CP
    ["$R_EXEC"]=$R_CP
    ["$R_EXTRACT"]=$R_CPEX
)
declare -A PEER_SHORT=(
    ["$R_CP"]="cp"
    ["$R_CPEX"]="cp of extracted"
)

checked=0
archive_bytes=0
zstd_bytes=0
for ((run = 1; run <= RUNS; run++)); do
    for mode in "${modes[@]}"; do
        echo "vma-bench: run $run/$RUNS, cache $mode" >&2

        rm -f "$ARCH"
        measure "$mode" "$R_CREATE" 1 "$IMG" "$BIN" create "$ARCH" "drive-scsi0=$IMG"
        archive_bytes=$(stat -c %s "$ARCH")

        measure "$mode" "$R_EXEC" 0 "$IMG" "$BIN" create "exec:cat >/dev/null" "drive-scsi0=$IMG"

        measure "$mode" "$R_VERIFY" 0 "$ARCH" "$BIN" verify "$ARCH"

        rm -rf "$EXDIR"
        measure "$mode" "$R_EXTRACT" 1 "$ARCH" "$BIN" extract "$ARCH" "$EXDIR"
        disk=$EXDIR/disk-drive-scsi0.raw
        [ -f "$disk" ] || die "vma extract wrote no $disk"
        if [ "$checked" = 0 ]; then
            echo "vma-bench: comparing the extracted disk with the image ..." >&2
            cmp "$IMG" "$disk" || die "the extracted disk differs from the image"
            checked=1
        fi

        rm -f "$OUT"; sync
        measure "$mode" "$R_CPEX" 1 "$disk" cp --sparse=always "$disk" "$OUT"
        rm -f "$OUT"; rm -rf "$EXDIR"; sync

        measure "$mode" "$R_CP" 1 "$IMG" cp --sparse=always "$IMG" "$OUT"
        rm -f "$OUT"; sync

        measure "$mode" "$R_QEMU" 1 "$IMG" qemu-img convert -f raw -O raw "$IMG" "$OUT"
        rm -f "$OUT"; sync

        measure "$mode" "$R_ZSTD" 1 "$IMG" zstd -q -T2 -1 "$IMG" -o "$OUT"
        zstd_bytes=$(stat -c %s "$OUT")
        rm -f "$OUT"; sync
    done
done

# ---- peak memory on a large, almost empty image ------------------------------------

if [ "$big_bytes" -gt 0 ]; then
    BIG=$WORK/big.raw
    echo "vma-bench: $BIG_SIZE sparse image, 1 MiB of data per GiB ..." >&2
    truncate -s "$big_bytes" "$BIG"
    for ((g = 0; g < big_bytes >> 30; g++)); do
        head -c 1M "$IMG" | dd of="$BIG" bs=1M seek=$((g << 10)) conv=notrunc status=none
    done
    rm -f "$ARCH"
    measure big "vma create → file (+ sync)" 1 "$BIG" "$BIN" create "$ARCH" "drive-scsi0=$BIG"
    big_archive_bytes=$(stat -c %s "$ARCH")
    measure big "vma verify" 0 "$ARCH" "$BIN" verify "$ARCH"
    rm -rf "$EXDIR"
    measure big "vma extract (+ sync)" 1 "$ARCH" "$BIN" extract "$ARCH" "$EXDIR"
    [ "$(stat -c %s "$EXDIR/disk-drive-scsi0.raw")" -eq "$big_bytes" ] ||
        die "vma extract of the $BIG_SIZE image wrote a disk of the wrong size"
    rm -rf "$EXDIR" "$ARCH" "$BIG"
fi

# ---- report -----------------------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo
echo "Machine: $(nproc) CPUs ($cpu), $mem RAM, work dir on $fstype ($(df -P "$WORK" | awk 'NR == 2 { print $1 }')), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Load average (1/5/15 min): $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "Image: $SIZE ($size_bytes bytes) in $CHUNK pieces; RUNS=$RUNS; vma: $BIN"
echo "Tools: $(cp --version | head -1), $(qemu-img --version | head -1), $(zstd --version | sed 's/^\*\*\* //; s/, by.*//')"
echo "Archive: $archive_bytes bytes; zstd -1 output: $zstd_bytes bytes"
for mode in "${modes[@]}"; do
    echo
    if [ "$mode" = drop ]; then
        echo "Page cache dropped (sync; echo 3 > $DROP) before every command:"
    else
        echo "Page cache warm (input read once with cat before every command):"
    fi
    echo
    echo "| operation | median s | runs (s) | MB/s of image | peak RSS MiB | time ratio vs peer |"
    echo "|---|---:|---|---:|---:|---|"
    for row in "${rows[@]}"; do
        key="$mode|$row"
        [ -n "${T[$key]:-}" ] || continue
        med=$(median <<<"${T[$key]}")
        rss=$(maxof <<<"${R[$key]}")
        runs=${T[$key]% }
        ratio="—"
        peer=${PEER[$row]:-}
        if [ -n "$peer" ] && [ -n "${T[$mode|$peer]:-}" ]; then
            pmed=$(median <<<"${T[$mode|$peer]}")
            ratio=$(awk -v a="$med" -v b="$pmed" -v p="${PEER_SHORT[$peer]}" \
                'BEGIN { if (b > 0) printf "%.2f × %s", a / b, p; else print "—" }')
        fi
        awk -v row="$row" -v med="$med" -v runs="$runs" -v size="$size_bytes" \
            -v rss="$rss" -v ratio="$ratio" 'BEGIN {
                mbs = med > 0 ? sprintf("%.0f", size / 1e6 / med) : "—"
                printf "| %s | %.2f | %s | %s | %.1f | %s |\n", row, med, runs, mbs, rss / 1024, ratio }'
    done
done
if [ "$big_bytes" -gt 0 ]; then
    echo
    echo "Peak memory on a $BIG_SIZE sparse image with 1 MiB of data per GiB (one run, archive $big_archive_bytes bytes):"
    echo
    echo "| operation | s | peak RSS MiB |"
    echo "|---|---:|---:|"
    for row in "vma create → file (+ sync)" "vma verify" "vma extract (+ sync)"; do
        awk -v row="$row" -v s="${T[big|$row]}" -v r="${R[big|$row]}" \
            'BEGIN { printf "| %s | %.2f | %.1f |\n", row, s, r / 1024 }'
    done
fi
