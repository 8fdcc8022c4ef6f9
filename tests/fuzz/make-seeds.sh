#!/usr/bin/env bash
# Regenerate the archive seed corpora tests/fuzz/corpus/reader/ and reader-sums/ from the
# fixtures in tests/data/ and small archives written by our own `vma create` (random
# uuids: the output differs on every run, which is fine for seeds). Not run by any
# test; kept to say where the seeds come from. Needs a built vma (make) and gzip, zstd,
# lzop, bzip2. The QMP, NBD and restore-map seeds are written by hand; reader/
# control-in-names.vma (a newline in a device and a config name) comes from
# tests/cli/mkvma.py, as tests/cli/hostile-control-names.sh builds it.
set -euo pipefail
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
VMA=${VMA:-$SRCDIR/build/vma}
D=$SRCDIR/tests/data
R=$SRCDIR/tests/fuzz/corpus/reader
S=$SRCDIR/tests/fuzz/corpus/reader-sums
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$R" "$S"

# small archives of our own: two devices (partial last cluster, sparse), a vmstate stream
printf 'boot: order=scsi0\nmemory: 512\n' >"$tmp/vm.conf"
printf '[OPTIONS]\nenable: 1\n' >"$tmp/vm.fw"
head -c 12288 /dev/zero >"$tmp/d1"
printf 'first block' | dd of="$tmp/d1" conv=notrunc status=none
printf 'third block' | dd of="$tmp/d1" bs=4096 seek=2 conv=notrunc status=none
head -c 70000 /dev/zero >"$tmp/d2"
printf 'second cluster' | dd of="$tmp/d2" bs=65536 seek=1 conv=notrunc status=none
head -c 8192 /dev/urandom >"$tmp/vmstate"
"$VMA" create -c "$tmp/vm.conf" -c "$tmp/vm.fw" "$tmp/two.vma" \
    drive-scsi0="$tmp/d1" drive-virtio1="$tmp/d2"
"$VMA" create -c "$tmp/vm.conf" "$tmp/vms.vma" vmstate="$tmp/vmstate" drive-scsi0="$tmp/d1"

plain=("$D/tiny.vma" "$D/ref-nodisk.vma" "$tmp/two.vma" "$tmp/vms.vma")
for f in "${plain[@]}"; do
    b=$(basename "$f" .vma)
    cp "$f" "$R/$b.vma"
    gzip -9nc "$f" >"$R/$b.vma.gz"
    zstd -q -19 -c "$f" >"$R/$b.vma.zst"
    lzop -c "$f" >"$R/$b.vma.lzo"
    bzip2 -9c "$f" >"$R/$b.vma.bz2"
done
cp "$D/negative/noblob.vma" "$D/negative/trunc-ext-boundary.vma" "$R/"
# concatenations (pigz/pbzip2 style) and their edges
f=$D/tiny.vma
head -c 12288 "$f" >"$tmp/p1"
tail -c +12289 "$f" >"$tmp/p2"
{ gzip -nc "$tmp/p1"; gzip -nc "$tmp/p2"; } >"$R/tiny-2members.vma.gz"
{ zstd -qc "$tmp/p1"; zstd -qc "$tmp/p2"; } >"$R/tiny-2frames.vma.zst"
{ bzip2 -c "$tmp/p1"; bzip2 -c "$tmp/p2"; } >"$R/tiny-2streams.vma.bz2"
{ lzop -c "$tmp/p1"; lzop -c "$tmp/p2"; } >"$R/tiny-2files.vma.lzo"
{ printf '\x50\x2a\x4d\x18\x04\x00\x00\x00skip'; zstd -qc "$f"; } >"$R/tiny-skippable.vma.zst"
{ gzip -nc "$f"; printf 'trailing garbage'; } >"$R/tiny-trailing.vma.gz"
lzop -c --crc32 "$f" >"$R/tiny-crc32.vma.lzo"
# truncations: inside the header, inside an extent, inside compressed data
head -c 12000 "$f" >"$R/tiny-cut-header.vma"
head -c 12900 "$f" >"$R/tiny-cut-extent.vma"
for z in gz zst lzo bz2; do
    n=$(stat -c %s "$R/tiny.vma.$z")
    head -c $((n - 9)) "$R/tiny.vma.$z" >"$R/tiny-cut.vma.$z"
done

# reader-sums: a mode byte (see fuzz-reader-sums.c), then a plain archive
# (mutations of the first byte find the other modes: plain seeds, and every mode once)
for f in "${plain[@]}" "$D/negative/trunc-ext-boundary.vma"; do
    { printf '\x00'; cat "$f"; } >"$S/$(basename "$f" .vma)-00"
done
for m in 01 0a 13 04 bc; do
    { printf "\\x$m"; cat "$D/tiny.vma"; } >"$S/tiny-$m"
done
chmod 644 "$R"/* "$S"/*
du -sh "$R" "$S"
