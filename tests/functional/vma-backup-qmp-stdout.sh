#!/usr/bin/env bash
# `vma backup -`: our stdout goes to the server with getfd (SCM_RIGHTS), which writes the
# archive into it (fakeqmp.py); -q prints nothing.
. "$(dirname "$0")/vma-backup-qmp.bash"

run ok -q -
[ "$rc" = 0 ] || fail "stdout: exit $rc; $(cat "$T/err")"
[ "$(cat "$T/out")" = "archive bytes from the server" ] || fail "stdout: '$(cat "$T/out")'"
[ ! -s "$T/err" ] || fail "-q: $(cat "$T/err")"
python3 -c '
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert reqs[1] == {"execute": "getfd", "arguments": {"fdname": "vma-backup"}, "id": reqs[1]["id"]}, reqs[1]
assert reqs[2]["arguments"] == {"backup-file": "/dev/fdname/vma-backup"}, reqs[2]
' "$T/requests" || fail "getfd requests: $(cat "$T/requests")"
echo PASS
