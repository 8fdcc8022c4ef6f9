#!/usr/bin/env bash
# A device or config name with a newline or another control character would forge
# output lines: "drive-scsi0\nDEV: dev_id=9 size: ... devname: drive-scsi9" adds a device
# to the listing Proxmox parses before it allocates volumes. Every command refuses such an
# archive at open (exit 1, one line naming the dev_id or config index, the name escaped)
# and prints nothing of it on stdout (docs/security.md, "What vmad and vma now refuse").
. "$(dirname "$0")/lib.bash"

forged='DEV: dev_id=9 size: 1099511627776 devname: drive-scsi9'
spec dev "{\"configs\": [[\"qemu-server.conf\", \"name: x\\n\"]],
          \"devices\": [{\"name\": \"drive-scsi0\\n$forged\", \"size\": 70000, \"fill\": 7}]}"
spec cfg "{\"configs\": [[\"qemu-server.conf\\nCFG: size: 9 name: evil.conf\", \"x\"]],
          \"devices\": [{\"name\": \"drive-scsi0\", \"size\": 70000, \"fill\": 7}]}"
spec esc '{"devices": [{"name": "drive-scsi0\u001b[2K\r", "size": 4096, "fill": 1}]}'
spec del '{"devices": [{"name": "drive-scsi0\u007f", "size": 4096, "fill": 1}]}'

dev_msg='dev_id 1: name "drive-scsi0\nDEV: dev_id=9 size: 1099511627776 devname: drive-scsi9" contains a control character'
cfg_msg='config 0: name "qemu-server.conf\nCFG: size: 9 name: evil.conf" contains a control character'
esc_msg='dev_id 1: name "drive-scsi0\033[2K\r" contains a control character'
del_msg='dev_id 1: name "drive-scsi0\177" contains a control character'

printf 'drive-scsi0=%s\n' "$T/target.raw" >"$T/map"
truncate -s 70000 "$T/target.raw"

# refused NAME MESSAGE ARGS...: exit 1, the one-line message, nothing on stdout
refused() {
    local name=$1 msg=$2
    shift 2
    expect_fail "$msg" "$@"
    [ -z "$out" ] || fail "vma $*: printed '$out'"
    ! printf '%s\n' "$out" "$err" | grep -q '^\(DEV\|CFG\|VMSTATE\):' ||
        fail "vma $*: a forged line: $err"
}

for a in dev cfg esc del; do
    eval "msg=\$${a}_msg"
    refused "$a" "$T/$a.vma: $msg" list "$T/$a.vma"
    refused "$a" "$T/$a.vma: $msg" list --json "$T/$a.vma"
    refused "$a" "$T/$a.vma: $msg" config "$T/$a.vma"
    refused "$a" "$T/$a.vma: $msg" config -c qemu-server.conf "$T/$a.vma"
    refused "$a" "$T/$a.vma: $msg" verify "$T/$a.vma"
    refused "$a" "$T/$a.vma: $msg" verify -v "$T/$a.vma"
    # verify --json reports the same line as JSON on stdout too
    expect_fail "$T/$a.vma: $msg" verify --json "$T/$a.vma"
    printf '%s\n' "$out" | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 1, lines
assert json.loads(lines[0]) == {"ok": False, "error": sys.argv[1]}, lines
' "$T/$a.vma: $msg" || fail "verify --json $a: $out"
    refused "$a" "$T/$a.vma: $msg" extract "$T/$a.vma" "$T/out-$a"
    [ ! -e "$T/out-$a" ] || fail "extract $a: created its directory"
    refused "$a" "$T/$a.vma: $msg" extract -r "$T/map" "$T/$a.vma" "$T/outr-$a"
    [ ! -e "$T/outr-$a" ] || fail "extract -r $a: created its directory"
    # from standard input: the same refusal
    out=$("$VMA" list - <"$T/$a.vma" 2>"$T/.stderr")
    rc=$?
    [ "$rc" -eq 1 ] && [ -z "$out" ] && grep -qF "$msg" "$T/.stderr" ||
        fail "list - <$a.vma: exit $rc, out '$out', err '$(cat "$T/.stderr")'"
done
cmp -s "$T/target.raw" <(head -c 70000 /dev/zero) || fail "extract -r wrote into the target"

# bytes >= 0x80 are not control characters: a UTF-8 name still lists
spec utf8 '{"devices": [{"name": "drive-\u00e9", "size": 4096, "fill": 1}]}'
expect_ok list "$T/utf8.vma"
case "$out" in
*"devname: drive-"$'\xc3\xa9'*) ;;
*) fail "utf-8 name: $out" ;;
esac
echo PASS
