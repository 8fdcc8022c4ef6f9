#!/usr/bin/env bash
# More QMP clients than a monitor takes (64) are disconnected at once, the others are
# served (docs/security.md, "Limits").
. "$(dirname "$0")/limits.bash"

truncate -s 1M "$T/disk.raw"
start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/disk.raw"
wait_socket "$T/qmp.sock"
py "$T" <<'EOF' || fail "QMP client limit"
import socket, sys
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
# a monitor takes 64 clients; the 65th is disconnected, the first ones still work
clients = [q] + [QMP(T + "/qmp.sock") for _ in range(63)]
extra = socket.socket(socket.AF_UNIX)
extra.connect(T + "/qmp.sock")
extra.settimeout(10)
data = b""
while True:
    chunk = extra.recv(65536)
    if not chunk:
        break
    data += chunk
assert b'"QMP"' not in data, data
for c in clients[1:]:
    c.negotiate()
assert q.ok("query-backup") == {"finishing": False}
q.ok("quit")
EOF
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC"
check_log
echo PASS
