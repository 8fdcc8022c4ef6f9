#!/usr/bin/env bash
# `vma extract --base`: a full archive, five incrementals and five differentials on two
# disks of odd sizes with random overlapping changes (clusters that became zero among
# them); every point of both chains restores bit-exact, with the bases in shuffled order,
# some compressed (zstd, gzip, lzop), the newest from stdin too; -d with a chain; the
# restored configs are the newest archive's, without the chain entry.
. "$(dirname "$0")/lib.bash"
. "$TESTDIR/chain-lib.bash"

C=$T/c
mkdir "$C"
make_chain "$C" 5 7

# compressed copies of some bases (the reader recognises them by magic)
zstd -q "$C/full.vma" -o "$C/full.vma.zst" || fail "zstd"
gzip -c "$C/inc2.vma" >"$C/inc2.vma.gz" || fail "gzip"
lzop -c "$C/inc4.vma" >"$C/inc4.vma.lzo" || fail "lzop"
base_file() {
    case $1 in
    full) echo "$C/full.vma.zst" ;;
    inc2) echo "$C/inc2.vma.gz" ;;
    inc4) echo "$C/inc4.vma.lzo" ;;
    *) echo "$C/$1.vma" ;;
    esac
}

# the full archive alone, as always
expect_ok extract "$C/full.vma" "$T/x0" >/dev/null
same_state "$T/x0" 0 "$C"

for i in 1 2 3 4 5; do
    names=(full)
    for ((k = 1; k < i; k++)); do names+=("inc$k"); done
    args=()
    RANDOM_SEED=$i
    for b in $(shuffled "${names[@]}"); do args+=(--base "$(base_file "$b")"); done
    run_vma extract "${args[@]}" "$C/inc$i.vma" "$T/inc$i"
    [ "$rc" -eq 0 ] || fail "extract inc$i (${args[*]}): exit $rc: $err"
    [ -z "$err" ] || fail "extract inc$i: stderr: $err"
    same_state "$T/inc$i" "$i" "$C"
    cmp "$T/inc$i/qemu-server.conf" "$C/conf$i/qemu-server.conf" ||
        fail "inc$i: the config is not the newest archive's"
    [ ! -e "$T/inc$i/vmabackup-chain.conf" ] || fail "inc$i: the chain entry was restored"
    [ "$(ls "$T/inc$i" | wc -l)" -eq 3 ] || fail "inc$i: unexpected files: $(ls "$T/inc$i")"
    is_sparse "$T/inc$i/disk-drive-scsi0.raw" || fail "inc$i: the restored disk is not sparse"

    run_vma extract --base "$(base_file full)" "$C/diff$i.vma" "$T/diff$i"
    [ "$rc" -eq 0 ] || fail "extract diff$i: exit $rc: $err"
    same_state "$T/diff$i" "$i" "$C"
done

# the newest archive from standard input, its bases from files
out=$("$VMA" extract --base "$C/inc3.vma" --base "$C/full.vma" --base "$C/inc1.vma" \
    --base "$C/inc4.vma.lzo" --base "$C/inc2.vma" - "$T/stdin" <"$C/inc5.vma" 2>"$T/err") ||
    fail "extract from stdin: $(cat "$T/err")"
same_state "$T/stdin" 5 "$C"
# DEVINFO lines as for one archive
[ "$(printf '%s\n' "$out" | grep -c '^DEVINFO ')" -eq 2 ] || fail "DEVINFO lines: $out"

# -d: one disk of the chain
expect_ok extract -d drive-virtio1 --base "$C/full.vma" --base "$C/inc1.vma" "$C/inc2.vma" "$T/d"
cmp "$T/d/disk-drive-virtio1.raw" "$C/s2-drive-virtio1.raw" || fail "-d: virtio1 differs"
[ ! -e "$T/d/disk-drive-scsi0.raw" ] || fail "-d: scsi0 restored"

# -v: progress and a summary for each archive read
expect_ok extract -v --base "$C/full.vma" "$C/diff2.vma" "$T/v"
[ "$(printf '%s\n' "$out" | grep -c '^total bytes read ')" -eq 2 ] || fail "-v summaries: $out"
exit 0
