#!/usr/bin/env bash
# The damaged archives of tests/data/negative: verify and extract fail with exit status 1
# and one line naming the problem (the deployed tool dies by a signal on each of them),
# extraction leaves no file under a final name, and the message names the extent's
# offset or the missing device where it should. negative-list.sh: list and config;
# negative-bad-data.sh: the damage no reader can see.
. "$(dirname "$0")/lib.bash"

N=$TESTDATA/negative

# file -> gist of the message (tests/data/README.md, negative/ table)
declare -A gist=(
    [bad-hdr.vma]="header checksum"
    [bad-exthdr.vma]="extent header checksum"
    [trunc-mid.vma]="short vma extent (89624 < 90624)"
    [dup-extent.vma]="duplicated cluster 0 for stream drive-efidisk0"
    [undeclared-dev.vma]="device id 3"
    [noblob.vma]="header size 12288"
    [trunc-ext-boundary.vma]="missing cluster 0"
)

for f in "${!gist[@]}"; do
    g=${gist[$f]}
    expect_fail "$g" verify "$N/$f"
    echo "verify $f: $err"
    expect_fail "$g" verify - <"$N/$f"
    expect_fail "$g" extract "$N/$f" "$T/x-$f"
    echo "extract $f: $err"
    if [ -d "$T/x-$f" ]; then
        [ -z "$(find "$T/x-$f" -name 'disk-*')" ] || fail "extract $f left a disk file"
        [ -z "$(find "$T/x-$f" -name 'tmp-disk-*')" ] || fail "extract $f left a tmp file"
        [ -z "$(find "$T/x-$f" -type f)" ] || fail "extract $f left files: $(ls "$T/x-$f")"
    fi
done

# The extent-header error names the extent's byte offset.
run_vma verify "$N/bad-exthdr.vma"
printf '%s\n' "$err" | grep -Eq 'offset|[0-9]{4,}' || fail "bad-exthdr: no offset in '$err'"

# The deployed verify passes an archive cut at an extent boundary; ours names the gap.
expect_fail "drive-scsi0" verify "$N/trunc-ext-boundary.vma"
exit 0
