#!/usr/bin/env bash
# `vma extract -r MAP ARCHIVE DIR` must never restore into the archive it reads: a map
# line naming the archive (by its path, a symlink or a hard link, or as standard input)
# is refused before anything is written, and the archive stays intact
# (docs/security.md, "What vmad and vma now refuse").
. "$(dirname "$0")/lib.bash"

head -c 1048576 /dev/urandom >"$T/a.raw"
check "create" "$VMA" create "$T/src.vma" -d format=raw:drive-scsi0="$T/a.raw"
cp "$T/src.vma" "$T/copy.vma"
ln -s "$T/src.vma" "$T/link.vma"
ln "$T/src.vma" "$T/hard.vma"

# map TARGET: a restore map with one line, drive-scsi0 onto TARGET
map() {
    printf '0:drive-scsi0=%s\n' "$1" >"$T/map"
}
intact() {
    cmp -s "$T/src.vma" "$T/copy.vma" || fail "$1: the archive was changed"
    # the directory stays (as after any failed extract), with nothing in it
    [ -z "$(ls -A "$T/out")" ] || fail "$1: left files: $(ls -A "$T/out")"
    rm -rf "$T/out"
}

for target in "$T/src.vma" "$T/link.vma" "$T/hard.vma"; do
    map "$target"
    run_vma extract -r "$T/map" "$T/src.vma" "$T/out"
    [ "$rc" -eq 1 ] || fail "target $target: exit $rc; $err"
    [ "$err" = "vma: extract: restore map: the target $target of drive-scsi0 is the archive being read" ] ||
        fail "target $target: stderr '$err'"
    intact "target $target"
done

# the archive given by a symlink, the target by its real name
map "$T/src.vma"
expect_fail "is the archive being read" extract -r "$T/map" "$T/link.vma" "$T/out"
intact "archive by symlink"

# standard input that is the archive file
map "$T/src.vma"
out=$("$VMA" extract -r "$T/map" - "$T/out" <"$T/src.vma" 2>"$T/.stderr")
rc=$?
[ "$rc" -eq 1 ] || fail "stdin: exit $rc; $(cat "$T/.stderr")"
grep -qx "vma: extract: restore map: the target $T/src.vma of drive-scsi0 is the archive being read" "$T/.stderr" ||
    fail "stdin: $(cat "$T/.stderr")"
intact "stdin"

# the control: another target of the right size is restored
truncate -s 1048576 "$T/target.raw"
map "$T/target.raw"
run_vma extract -r "$T/map" "$T/src.vma" "$T/out"
[ "$rc" -eq 0 ] || fail "a normal restore: exit $rc; $err"
cmp -s "$T/target.raw" "$T/a.raw" || fail "a normal restore: wrong data"
echo PASS
