#!/usr/bin/env bash
# `vma backup --devlist DEV --json -q` (with --speed and --max-workers): an archive of just
# that device, nothing on stderr, one JSON line with the final status on stdout.
. "$(dirname "$0")/vma-backup-vmad.bash"

bk --qmp "$S" --devlist drive-scsi1 --json -q --speed 1G --max-workers 3 "$T/one.vma"
expect_rc 0 "backup of one device"
[ ! -s "$T/err" ] || fail "-q printed: $(cat "$T/err")"
check_extract "$T/one.vma" "$T/x4" drive-scsi1="$T/b.raw"
python3 - "$T/out" "$(list_uuid "$T/one.vma")" "$T/one.vma" $((3 * MIB + 512)) <<'EOF' ||
import json, sys
text = open(sys.argv[1]).read()
assert text.count("\n") == 1, text
j = json.loads(text)
assert j["status"] == "done", j
assert j["uuid"] == sys.argv[2], j
assert j["backup-file"] == sys.argv[3], j
assert j["total"] == j["transferred"] == int(sys.argv[4]), j
assert "errmsg" not in j and j["finishing"] is False, j
EOF
    fail "--json: $(cat "$T/out")"
quit_vmad
echo PASS
