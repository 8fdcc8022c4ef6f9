#!/usr/bin/env bash
# Archives are untrusted input. Names must never escape the target directory, and any
# damage (truncation, flipped bits, wrong uuids, absurd sizes and lengths) ends in exit
# status 1 with one line of explanation: never a signal, never a hang.
. "$(dirname "$0")/lib.bash"

spec() { # NAME JSON: build $T/NAME.vma from a mkvma.py spec
    printf '%s\n' "$2" >"$T/$1.json"
    $MKVMA "$T/$1.json" "$T/$1.vma" || fail "mkvma $1"
}

# The generator itself must produce what our reader accepts.
spec good '{"configs": [["qemu-server.conf", "name: x\n"]],
            "devices": [{"name": "drive-scsi0", "size": 70000, "fill": 7}]}'
expect_ok verify "$T/good.vma"
expect_ok extract "$T/good.vma" "$T/good"
[ "$(stat -c %s "$T/good/disk-drive-scsi0.raw")" -eq 70000 ] || fail "generator: wrong size"

# ---- names that would escape or hide ----------------------------------------------------
mkdir "$T/jail"
for name in "../evil" "../../evil" "/tmp/evil-abs" "sub/evil" ".hidden" ".." "." "a..b"; do
    tag=$(printf '%s' "$name" | tr -c 'a-z' '_')
    spec "dev$tag" "{\"devices\": [{\"name\": \"$name\", \"size\": 4096, \"fill\": 1}]}"
    expect_fail "refusing device name" extract "$T/dev$tag.vma" "$T/jail/d$tag"
    [ ! -e "$T/jail/d$tag" ] || fail "device '$name': the target directory was created"
    spec "cfg$tag" "{\"configs\": [[\"$name\", \"x\"]]}"
    expect_fail "refusing config name" extract "$T/cfg$tag.vma" "$T/jail/c$tag"
    # listing such an archive is harmless and works
    expect_ok list "$T/cfg$tag.vma"
done
spec ctl '{"devices": [{"name": "a\nDEVINFO /etc/passwd 1", "size": 4096, "fill": 1}]}'
expect_fail "control character" extract "$T/ctl.vma" "$T/jail/ctl"
spec empty '{"configs": [["", "x"]]}'
expect_fail "refusing config name" extract "$T/empty.vma" "$T/jail/empty"
[ ! -e "$T/evil" ] && [ ! -e "$T/evil-abs" ] && [ ! -e /tmp/evil-abs ] || fail "a file escaped"
[ -z "$(ls -A "$T/jail")" ] || fail "refused extractions left something: $(ls -A "$T/jail")"
# Entries that would share a file name in DIR.
spec clash1 '{"configs": [["disk-drive-scsi0.raw", "x"]],
              "devices": [{"name": "drive-scsi0", "size": 4096, "fill": 1}]}'
expect_fail "would both be written to" extract "$T/clash1.vma" "$T/jail/clash1"
spec clash2 '{"devices": [{"name": "d", "size": 4096, "fill": 1}, {"name": "d", "size": 4096}]}'
# (the reader already refuses two devices of one name; the CLI would too)
expect_fail " d " extract "$T/clash2.vma" "$T/jail/clash2"
spec clash3 '{"configs": [["c", "x"], ["c", "y"]]}'
expect_fail "would both be written to" extract "$T/clash3.vma" "$T/jail/clash3"
# With -r, device names are not file names: a mapped device may be called anything.
# (Config names still are, and are checked.)

# ---- damage that the checksums or the structure reveal ----------------------------------
spec wronguuid '{"devices": [{"name": "drive-scsi0", "size": 65536, "fill": 3}],
                 "extent_uuid": "ffffffffffffffffffffffffffffffff"}'
expect_fail "uuid" verify "$T/wronguuid.vma"
expect_fail "uuid" extract "$T/wronguuid.vma" "$T/wu"

spec hugedev '{"devices": [{"name": "drive-scsi0", "size": 18446744073709551615, "emit": false}]}'
spec bigdev '{"devices": [{"name": "drive-scsi0", "size": 281474976710657, "emit": false}]}'
spec nodata '{"devices": [{"name": "drive-scsi0", "size": 1099511627776, "emit": false}]}'
spec hdrsize '{"configs": [["c", "x"]], "header_size_delta": 1048576}'
spec blobsize '{"configs": [["c", "x"]], "blob_size_override": 4000000000}'
spec noterm '{"devices": [{"name": "x", "size": 4096, "fill": 1}],
              "raw_name_blobs": [[0, "drive-scsi0"]]}'
for f in hugedev bigdev nodata hdrsize blobsize noterm; do
    for cmd in verify extract; do
        args=("$T/$f.vma")
        [ "$cmd" = extract ] && args+=("$T/x-$f")
        run_vma "$cmd" "${args[@]}"
        echo "$cmd $f: rc=$rc $err"
        [ "$rc" -eq 1 ] || fail "$cmd $f: exit $rc (want 1): $err"
        [ -n "$err" ] || fail "$cmd $f: no message"
    done
done

# ---- truncation at random offsets, flipped bits anywhere: exit 1, never a signal --------
src=$TESTDATA/ref-2dev.vma
size=$(stat -c %s "$src")
RANDOM=4242
for i in $(seq 1 25); do
    cut=$(((RANDOM * 32768 + RANDOM) % size))
    head -c "$cut" "$src" >"$T/trunc.vma"
    for cmd in verify extract; do
        rm -rf "$T/xt"
        args=("$T/trunc.vma")
        [ "$cmd" = extract ] && args+=("$T/xt")
        run_vma "$cmd" "${args[@]}"
        [ "$rc" -eq 1 ] || fail "$cmd of a copy cut at $cut: exit $rc: $err"
        [ -n "$err" ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] ||
            fail "$cmd cut at $cut: stderr '$err'"
        if [ -d "$T/xt" ]; then
            [ -z "$(find "$T/xt" -type f)" ] || fail "extract cut at $cut left files"
        fi
    done
done
for i in $(seq 1 40); do
    cp "$src" "$T/flip.vma"
    # the header (12288 + blobs) and the first extent headers are the interesting part
    off=$(((RANDOM * 32768 + RANDOM) % 20000))
    if [ $((i % 4)) -eq 0 ]; then
        off=$(((RANDOM * 32768 + RANDOM) % size))
    fi
    byte=$(od -An -tu1 -j "$off" -N1 "$T/flip.vma" | tr -d ' ')
    printf "$(printf '\\%03o' $(((byte ^ (1 << (RANDOM % 8))) & 255)))" |
        dd of="$T/flip.vma" bs=1 seek="$off" conv=notrunc status=none
    for cmd in list verify; do
        run_vma "$cmd" "$T/flip.vma"
        [ "$rc" -le 1 ] || fail "$cmd with a bit flipped at $off: exit $rc: $err"
        if [ "$rc" -eq 1 ]; then
            [ -n "$err" ] || fail "$cmd flip at $off: failed without a message"
        fi
    done
done

# ---- garbage and empty input ---------------------------------------------------------------
: >"$T/zero.vma"
expect_fail "" verify "$T/zero.vma"
head -c 100000 /dev/urandom >"$T/garbage.vma"
expect_fail "" list "$T/garbage.vma"
expect_fail "" verify - </dev/null
expect_fail "" list "$T/no-such-file.vma"
head -c 100000 /dev/zero | gzip -c >"$T/zeros.gz"
expect_fail "" verify "$T/zeros.gz"
printf '\x28\xb5\x2f\xfd garbage after a zstd magic' >"$T/badzstd.vma"
expect_fail "" verify "$T/badzstd.vma"
exit 0
