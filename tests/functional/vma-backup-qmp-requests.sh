#!/usr/bin/env bash
# `vma backup`'s QMP client against a scripted server (fakeqmp.py): what it sends
# (arguments with relative paths made absolute, unique integer ids), framing it must
# accept (a pretty-printed greeting, events before a reply, a reply split over several
# writes, two messages in one write), and the exact progress and summary text for known
# numbers (100 MiB, half of it zero).
. "$(dirname "$0")/vma-backup-qmp.bash"

mkdir "$T/cwd"
cd "$T/cwd" || fail "cd"
run ok -d a,b -c ../vm.conf --firewall /abs/fw --speed 2M --max-workers 4 --fleecing rel.vma
cd / || fail "cd"
[ "$rc" = 0 ] || fail "ok: exit $rc; $(cat "$T/err")"
python3 - "$T/requests" "$T" <<'EOF' || fail "requests: $(cat "$T/requests")"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
T = sys.argv[2]
names = [r["execute"] for r in reqs]
assert names[:2] == ["qmp_capabilities", "backup"], names
assert set(names[2:]) == {"query-backup"} and len(names) >= 4, names
ids = [r["id"] for r in reqs]
assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids), ids
assert reqs[1]["arguments"] == {
    "backup-file": T + "/cwd/rel.vma", "devlist": "a,b", "config-file": T + "/cwd/../vm.conf",
    "firewall-file": "/abs/fw", "speed": 2 << 20, "max-workers": 4, "fleecing": True,
}, reqs[1]
EOF
# the known numbers: 100 MiB, half of it zero
grep -qx "INFO: started backup task 'u-1'" "$T/err" || fail "start line: $(cat "$T/err")"
grep -qE '^INFO: 100% \(100\.0 MiB of 100\.0 MiB\) in 0s, read: [0-9.]+ (MiB|GiB)/s, write: [0-9.]+ (MiB|GiB)/s$' \
    "$T/err" || fail "last line: $(cat "$T/err")"
grep -qx "INFO: backup is sparse: 50.00 MiB (50%) total zero data" "$T/err" ||
    fail "sparse line: $(cat "$T/err")"
grep -qx "INFO: transferred 100.00 MiB in <1 seconds" "$T/err" ||
    fail "transferred line: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 4 ] || fail "ok: other output: $(cat "$T/err")"
echo PASS
