#!/usr/bin/env bash
# Archives are untrusted input: names must never escape the target directory. A device
# or config name with '..', '/', a leading dot, a control character or none at all is
# refused by extract (exit 1, one line) before anything is created, listing such an
# archive still works, and entries that would share a file name in DIR are refused.
. "$(dirname "$0")/lib.bash"

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
exit 0
