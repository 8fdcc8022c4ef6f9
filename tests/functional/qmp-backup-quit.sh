#!/usr/bin/env bash
# quit while a backup runs: the backup is cancelled, its partial file removed, and vmad
# exits with status 0 and a clean log.
# The setup (vmad, two disks exported over NBD, a fleecing dir) is qmp-backup.bash.
. "$(dirname "$0")/qmp-backup.bash"

py "$T" <<'PYEOF' || fail "backup at shutdown"
import sys
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
q.ok("backup", {"backup-file": T + "/out/five.vma", "speed": 1 << 20})
assert q.ok("query-backup")["status"] == "active"
q.ok("quit")
PYEOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC after quit during a backup"
[ ! -e "$T/out/five.vma" ] || fail "the cancelled backup's file was left behind"
check_log
echo PASS
