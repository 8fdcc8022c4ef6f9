#!/usr/bin/env bash
# mkimage.sh — write the benchmark disk image: SIZE bytes in CHUNK-sized pieces repeating
#   random, random, zeros written to disk, hole
# i.e. half random data, a quarter allocated zero clusters, a quarter holes.
#
# Usage: bench/mkimage.sh SIZE PATH [CHUNK]      (SIZE, CHUNK: bytes or K/M/G/T suffix;
#                                                 CHUNK defaults to 1M)
#
# The random bytes are AES-128-CTR of /dev/zero (openssl enc, fixed key and iv), laid out
# by a few lines of python3, so every run on every machine gets the same bytes. Every
# benchmark here (vma-bench.sh, backup-bench.sh, backup-latency.sh) uses it.
set -euo pipefail
export LC_ALL=C

die() { echo "mkimage: $*" >&2; exit 1; }

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

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: mkimage.sh SIZE PATH [CHUNK]"
size=$(to_bytes "$1")
path=$2
chunk=$(to_bytes "${3:-1M}")
[ "$size" -gt 0 ] || die "SIZE must be > 0"
[ "$chunk" -ge 4096 ] && [ $((chunk % 4096)) -eq 0 ] || die "CHUNK must be a multiple of 4096"
for t in openssl python3; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing"
done

gen_py='
import os, sys
size, chunk, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
src = sys.stdin.buffer
zeros = bytes(chunk)
with open(path, "wb") as out:
    pos, i = 0, 0
    while pos < size:
        n = min(chunk, size - pos)
        kind = i % 4
        if kind < 2:
            data = src.read(n)
            if len(data) != n:
                sys.exit("short read from the random stream")
            out.write(data)
        elif kind == 2:
            out.write(zeros[:n])
        else:
            out.seek(n, os.SEEK_CUR)
        pos += n
        i += 1
    out.truncate(size)
'
rm -f "$path"
# openssl dies of SIGPIPE once python3 has what it needs: only python3's status counts.
if ! (
    set +o pipefail
    openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null |
        python3 -c "$gen_py" "$size" "$chunk" "$path"
); then
    die "writing $path failed"
fi
[ "$(stat -c %s "$path")" -eq "$size" ] || die "writing $path failed: wrong size"
