#!/usr/bin/env bash
# backup with a vm-monitor that names nothing (a missing path, a regular file, a socket
# nobody listens on): the first two fail the command itself, the third the backup (the
# connection is made in the background); no archive is left, and vmad goes on: a plain
# backup right after succeeds.
set -u
. "$(dirname "$0")/qmp-lib.bash"

truncate -s 4M "$T/a.raw"
: >"$T/plain"
start_vmad --monitor "$T/qmp.sock" --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw"
wait_socket "$T/qmp.sock"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/dead.sock" ||
    fail "make a socket nobody listens on"

py "$T" <<'EOF' || fail "vm-monitor pointing at nothing"
import sys, time
from qmp import QMP, expect_error
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=30)
q.negotiate()
r = q.cmd("backup", {"backup-file": T + "/x.vma", "vm-monitor": T + "/missing.sock"})
expect_error(r, "GenericError", "vm-monitor %s/missing.sock: No such file or directory" % T)
r = q.cmd("backup", {"backup-file": T + "/x.vma", "vm-monitor": T + "/plain"})
expect_error(r, "GenericError", "vm-monitor %s/plain: not a socket" % T)
q.ok("backup", {"backup-file": T + "/x.vma", "vm-monitor": T + "/dead.sock"})
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.05)
st = q.ok("query-backup")
assert st["status"] == "error", st
want = "vm-monitor: connect to %s/dead.sock: Connection refused" % T
assert st["errmsg"] == want, st
import os
assert not os.path.exists(T + "/x.vma"), "a failed backup left its archive"
q.ok("backup", {"backup-file": T + "/y.vma"})
while q.ok("query-backup")["status"] == "active":
    time.sleep(0.05)
st = q.ok("query-backup")
assert st["status"] == "done" and "vmstate-method" not in st, st
q.close()
EOF
"$VMA" verify "$T/y.vma" || fail "the plain backup after the failures"
quit_vmad
echo PASS
