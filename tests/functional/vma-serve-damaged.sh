#!/bin/bash
# vma serve (and the vma driver under it) refuses what it cannot serve exactly, with one
# line that says why: damaged archives (header or extent-header bit flips, truncation,
# duplicate or undeclared clusters), compressed archives (with the command that
# decompresses them), pipes, unknown devices. A flipped data bit cannot be detected by
# any reader of the format (no data checksum); such an archive opens.
. "$(dirname "$0")/lib.bash"
. "$SRCDIR/tests/functional/vma-serve-lib.bash"
need_tools python3 nbdinfo
D=$SRCDIR/tests/data
N=$D/negative

serve_fails "wrong vma header checksum" "$N/bad-hdr.vma"
serve_fails "wrong extent header checksum" "$N/bad-exthdr.vma"
serve_fails "short vma extent" "$N/trunc-mid.vma"
serve_fails "detected missing cluster 0 for stream drive-scsi0" "$N/trunc-ext-boundary.vma"
serve_fails "found duplicated cluster" "$N/dup-extent.vma"
serve_fails "unknown device id 3" "$N/undeclared-dev.vma"
serve_fails "wrong vma header size" "$N/noblob.vma"

# our own archive, damaged here: a bit flip in the second extent header, a cut in data
mkimage "$T/d.raw" $((16 * 1024 * 1024)) 5
"$VMA" create "$T/ok.vma" drive-scsi0="$T/d.raw" || fail "vma create"
python3 - "$T/ok.vma" "$T/flip.vma" "$T/cut.vma" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
hs = struct.unpack(">I", data[56:60])[0]
bc = struct.unpack(">H", data[hs + 6:hs + 8])[0]
second = hs + 512 + bc * 4096
flip = bytearray(data)
flip[second + 200] ^= 0x04
open(sys.argv[2], "wb").write(flip)
open(sys.argv[3], "wb").write(data[:second + 512 + 4096])
PY
second=$(python3 -c "
import struct; d=open('$T/ok.vma','rb').read(); hs=struct.unpack('>I',d[56:60])[0]
print(hs + 512 + struct.unpack('>H', d[hs+6:hs+8])[0] * 4096)")
serve_fails "extent at byte $second: wrong extent header checksum" "$T/flip.vma"
serve_fails "extent at byte $second: short vma extent" "$T/cut.vma"

# a flipped data byte: undetectable by the format; the archive opens
start_serve "$N/bad-data.vma"
stop_serve

# compressed archives and pipes
serve_fails "the archive is compressed (zstd): random access needs an uncompressed archive, decompress it first (zstd -d $D/ref-2dev.vma.zst)" "$D/ref-2dev.vma.zst"
serve_fails "decompress it first (gzip -d" "$D/ref-2dev.vma.gz"
serve_fails "decompress it first (lzop -d" "$D/ref-2dev.vma.lzo"
mkfifo "$T/fifo"
serve_fails "not a regular file or block device" "$T/fifo"
serve_fails "No such file or directory" "$T/missing.vma"
serve_fails "wrong vma header checksum" --base "$N/bad-hdr.vma" "$D/tiny.vma"
echo "PASS"
