#!/usr/bin/env bash
# Fault injection into `vma create` and `vma extract` (tests/faultinj/faultinj.c):
# a failing write, flush or read (ENOSPC, EIO) makes the command fail with one line on
# stderr, exit status 1, and nothing left under a final name — create removes its
# partial archive, extract every file it created (tmp-disk-*, configs); short transfers
# and EINTR anywhere change nothing: the archive verifies and the extracted disks are
# bit-identical. Every case also proves that its fault was injected.
. "$(dirname "$0")/../cli/lib.bash"
. "$(dirname "$0")/faults-lib.bash"
requires zstd

I=$T/img
mkdir "$I"
python3 - "$I" <<'EOF'
import os, random, sys
d = sys.argv[1]
rnd = random.Random(7)
# a: 6 MiB, random 64 KiB runs between zero stretches, one hole-only MiB at the end
a = bytearray(6 * 1024 * 1024)
for i in range(0, 5 * 1024 * 1024, 3 * 65536):
    a[i:i + 65536 + 4096] = rnd.randbytes(65536 + 4096)
open(os.path.join(d, "a.raw"), "wb").write(a)
open(os.path.join(d, "b.raw"), "wb").write(rnd.randbytes(300000))
EOF
printf 'memory: 512\n' >"$I/qemu-server.conf"
DEVS=(-d "format=raw:drive-scsi0=$I/a.raw" -d "format=raw:drive-scsi1=$I/b.raw")

# fvma SPEC ARGS...: vma ARGS with faults SPEC; $out, $err, $rc as run_vma sets them
fvma() {
    local spec=$1
    shift
    fault_log_reset
    out=$(faulty "$spec" "$VMA" "$@" 2>"$T/.stderr")
    rc=$?
    err=$(cat "$T/.stderr")
}

# fails_with GIST: the last fvma failed properly, and a fault was injected
fails_with() {
    [ "$rc" -eq 1 ] || fail "$CASE: exit $rc (want 1); stderr: $err"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$CASE: stderr is not one line: $err"
    case $err in
    vma:*"$1"*) ;;
    *) fail "$CASE: stderr '$err' lacks '$1'" ;;
    esac
    [ "$(faults_injected)" -gt 0 ] || fail "$CASE: no fault was injected"
}

succeeded() {
    [ "$rc" -eq 0 ] || fail "$CASE: exit $rc: $err"
    [ "$(faults_injected)" -gt 0 ] || fail "$CASE: no fault was injected"
}

same_disks() {      # same_disks DIR
    cmp "$1/disk-drive-scsi0.raw" "$I/a.raw" || fail "$CASE: drive-scsi0 differs"
    cmp "$1/disk-drive-scsi1.raw" "$I/b.raw" || fail "$CASE: drive-scsi1 differs"
    cmp "$1/qemu-server.conf" "$I/qemu-server.conf" || fail "$CASE: config differs"
}

# ---- vma create: failures remove the partial archive -----------------------------------
mkdir "$T/out"
for c in "writev ENOSPC after=0:write to" "writev ENOSPC after=2:No space left on device" \
         "writev EIO after=1:Input/output error" "fdatasync EIO after=0:flush" \
         "fdatasync EDQUOT after=0:Disk quota exceeded"; do
    set -- ${c%%:*}
    CASE="create, $1 $2 ($3)"
    # the archive is written as .c.vma.tmp-XXXXXX until it is complete
    fvma "op=$1,path=*/out/.c.vma.tmp-*,$3,err=$2" create -c "$I/qemu-server.conf" "$T/out/c.vma" \
        "${DEVS[@]}"
    fails_with "${c#*:}"
    [ -z "$(ls -A "$T/out")" ] || fail "$CASE: left $(ls "$T/out") behind"
done

CASE="create, reading an image fails"
fvma "op=preadv|pread,path=*/img/a.raw,after=2,err=EIO" create "$T/out/c.vma" "${DEVS[@]}"
fails_with "read image $I/a.raw at offset"
[ -z "$(ls -A "$T/out")" ] || fail "$CASE: left $(ls "$T/out") behind"

CASE="create, reading a config fails"
fvma "op=pread,path=*/qemu-server.conf,err=EIO" create -c "$I/qemu-server.conf" \
    "$T/out/c.vma" "${DEVS[@]}"
fails_with "read config"
[ -z "$(ls -A "$T/out")" ] || fail "$CASE: left $(ls "$T/out") behind"

CASE="create into exec:, the pipe breaks"
fvma "op=writev,path=pipe:*,after=1,err=EPIPE" create "exec:cat >'$T/out/p.vma'" "${DEVS[@]}"
fails_with "Broken pipe"

# ---- vma create: short writes and EINTR change nothing ---------------------------------
CASE="create, short writes and reads"
fvma "op=writev|preadv|pread,mode=short" create -c "$I/qemu-server.conf" "$T/short.vma" \
    "${DEVS[@]}"
succeeded
CASE="create, EINTR on every 3rd call"
fvma "op=*,every=3,mode=eintr" create -c "$I/qemu-server.conf" "$T/eintr.vma" "${DEVS[@]}"
succeeded
CASE="create, EINTR on the flush"
fvma "op=fdatasync,mode=eintr,count=2" create "$T/out/f.vma" "${DEVS[@]}"
succeeded
rm -f "$T/out/f.vma"
CASE="create into exec:, short writes, EINTR, EAGAIN on the pipe"
fvma "op=writev,path=pipe:*,every=2,mode=short;op=writev,path=pipe:*,every=3,mode=eintr;op=writev,path=pipe:*,every=5,err=EAGAIN" \
    create -c "$I/qemu-server.conf" "exec:cat >'$T/pipe.vma'" "${DEVS[@]}"
succeeded
check "reference archive" "$VMA" create -c "$I/qemu-server.conf" "$T/ref.vma" "${DEVS[@]}"
for a in short eintr pipe; do
    CASE="archive written with $a faults"
    expect_ok verify "$T/$a.vma"
    expect_ok extract "$T/$a.vma" "$T/x-$a"
    same_disks "$T/x-$a"
    # the same records as a fault-free run (ctime and uuid aside)
    [ "$("$VMA" list "$T/$a.vma" | grep -v '^CTIME')" = \
      "$("$VMA" list "$T/ref.vma" | grep -v '^CTIME')" ] || fail "$CASE: listing differs"
done

# file modes (docs/security.md): a new archive is 0600, an extraction's directory 0700
[ "$(stat -c %a "$T/ref.vma")" = 600 ] || fail "archive mode $(stat -c %a "$T/ref.vma")"
[ "$(stat -c %a "$T/x-short")" = 700 ] || fail "extract directory mode $(stat -c %a "$T/x-short")"

# ---- vma extract: failures leave nothing under a final name ----------------------------
zstd -q -c "$T/ref.vma" >"$T/ref.vma.zst"
# left_in DIR: what is left in DIR (the run created it and leaves it, as Proxmox's does)
left_in() {
    ls -A "$1" 2>/dev/null
}
n=0
for c in "pwrite ENOSPC tmp-disk-drive-scsi0 after=2:No space left on device" \
         "pwrite EIO tmp-disk-drive-scsi1 after=0:Input/output error" \
         "pwrite ENOSPC qemu-server.conf after=0:write" \
         "fdatasync EIO tmp-disk-drive-scsi1 after=0:flush" \
         "read EIO ref.vma after=3:read"; do
    set -- ${c%%:*}
    n=$((n + 1))
    CASE="extract, $1 $2 on $3 ($4)"
    fvma "op=$1,path=*/$3*,$4,err=$2" extract "$T/ref.vma" "$T/xf$n"
    fails_with "${c#*:}"
    [ -z "$(left_in "$T/xf$n")" ] || fail "$CASE: left $(left_in "$T/xf$n") behind"
done

CASE="extract from a zstd pipe, read fails"
fault_log_reset
out=$(zstd -q -d -c "$T/ref.vma.zst" | faulty "op=read,path=pipe:*,after=4,err=EIO" \
      "$VMA" extract - "$T/xp" 2>"$T/.stderr")
rc=$?
err=$(cat "$T/.stderr")
fails_with "Input/output error"
[ -z "$(left_in "$T/xp")" ] || fail "$CASE: left $(left_in "$T/xp") behind"

# with a restore map, write-zeros asks fallocate(ZERO_RANGE) first and falls back to
# writing zeros: a failing fallocate changes nothing, a failing fallback write fails
fifo=$T/map.fifo
mkfifo "$fifo"
head -c $((6 * 1024 * 1024)) /dev/zero | tr '\0' '\377' >"$T/target0"
CASE="extract -r, fallocate fails, zeros written instead"
( printf '1:drive-scsi0=%s\nskip=drive-scsi1\ndone\n' "$T/target0" >"$fifo" ) &
cleanup_pid $!
fvma "op=fallocate,path=*/target0,err=EIO" extract -r "$fifo" "$T/ref.vma" "$T/xr"
succeeded
cmp "$T/target0" "$I/a.raw" || fail "$CASE: the target differs"

# ---- vma extract: short writes and EINTR change nothing --------------------------------
CASE="extract, short reads and writes"
fvma "op=read|pwrite,mode=short" extract "$T/ref.vma" "$T/xs"
succeeded
same_disks "$T/xs"
CASE="extract, EINTR on every 3rd call"
fvma "op=*,every=3,mode=eintr" extract "$T/ref.vma" "$T/xe"
succeeded
same_disks "$T/xe"
CASE="extract, EINTR on the flush"
fvma "op=fdatasync,mode=eintr,count=3" extract "$T/ref.vma" "$T/xe2"
succeeded
same_disks "$T/xe2"
CASE="extract from a zstd pipe, short reads and EINTR"
fault_log_reset
out=$(zstd -q -d -c "$T/ref.vma.zst" |
      faulty "op=read,every=2,mode=short;op=*,every=3,mode=eintr" "$VMA" extract - "$T/xz" \
      2>"$T/.stderr")
rc=$?
err=$(cat "$T/.stderr")
succeeded
same_disks "$T/xz"
CASE="verify, EINTR and short reads on a compressed file"
fvma "op=read,every=2,mode=short;op=read,every=3,mode=eintr" verify "$T/ref.vma.zst"
succeeded
echo PASS
