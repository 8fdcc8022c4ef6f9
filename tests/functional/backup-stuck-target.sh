#!/usr/bin/env bash
# A backup whose target is stuck must still end promptly when it is cancelled or vmad is
# told to quit (backup-cancel "returns at once; the job ends shortly after"): the target
# here is an exec: command that neither reads its input nor exits (a hung ssh or a
# compressor writing to a dead NFS server looks the same to vmad); one that reads the
# whole archive and then does not exit; a FIFO whose reader stops reading without
# closing, and a passed pipe descriptor nobody reads.
#
# Expected: after backup-cancel, query-backup reports status error "backup canceled"
# within 5 s; after quit, vmad exits with status 0 within 10 s; the command is not left
# running.
. "$(dirname "$0")/qmp-lib.bash"
mkfifo "$T/fifo"
truncate -s 8M "$T/d0.raw"
head -c 4M /dev/urandom | dd of="$T/d0.raw" conv=notrunc status=none

# the stuck exec: commands write their pids to $T/cmd*.pid: kill them at exit
on_exit 'for f in "$T"/cmd*.pid; do [ -s "$f" ] && kill -9 "$(cat "$f")"; done'

start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/d0.raw"
wait_socket "$T/qmp.sock"

py "$T" <<'EOF' || fail "cancel with a stuck target"
import os, sys, threading, time
from qmp import QMP
from pitlib import wait_backup

T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=60)
q.negotiate()

def cancel_ends(what, args, limit=5.0):
    q.ok("backup", args)
    time.sleep(0.5)                           # the pipe is full by now
    st = q.ok("query-backup")
    assert st["status"] == "active", st
    t = time.monotonic()
    assert q.ok("backup-cancel") == {}
    st = wait_backup(q, timeout=60, poll=0.05)
    took = time.monotonic() - t
    assert st["status"] == "error" and st["errmsg"] == "backup canceled", st
    print("%s: the backup ended %.1f s after backup-cancel" % (what, took))
    assert took < limit, "%s: backup-cancel took %.1f s to end the backup" % (what, took)
    q.events.clear()

# a FIFO whose reader does not read
stop = threading.Event()
def reader():
    fd = os.open(T + "/fifo", os.O_RDONLY)
    stop.wait()
    os.close(fd)
th = threading.Thread(target=reader)
th.start()
time.sleep(0.2)
try:
    cancel_ends("FIFO", {"backup-file": T + "/fifo"})
finally:
    stop.set()
    th.join()

# a passed pipe nobody reads
r, w = os.pipe()
assert q.cmd("getfd", {"fdname": "p"}, fds=[w]) == {"return": {}}
os.close(w)
cancel_ends("passed pipe", {"backup-file": "/dev/fdname/p"})
os.close(r)

# an exec: command that neither reads nor exits
pidfile = T + "/cmd1.pid"
cancel_ends("exec: command", {"backup-file": "exec:echo $$ > '%s'; exec sleep 20" % pidfile})
def gone(pidfile):
    pid = int(open(pidfile).read())
    time.sleep(0.2)
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z", \
        "the command is still running"
gone(pidfile)

# an exec: command that reads the whole archive, then hangs instead of exiting (the
# backup is waiting for its exit status when it is cancelled)
pidfile = T + "/cmd3.pid"
cancel_ends("exec: command that does not exit",
            {"backup-file": "exec:echo $$ > '%s'; cat > '%s/cmd3.out'; exec sleep 20"
             % (pidfile, T)})
gone(pidfile)
assert os.path.getsize(T + "/cmd3.out") > 4 << 20, "the command did not read the archive"
q.close()
EOF

# quit while the stuck command holds the backup
py "$T" <<'EOF' || fail "quit with a stuck target"
import sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
q.ok("backup", {"backup-file": "exec:echo $$ > '%s/cmd2.pid'; exec sleep 20" % T})
time.sleep(0.5)
q.ok("quit")
EOF
t0=$SECONDS
wait_exit 10
[ "$VMAD_RC" != 124 ] || fail "vmad still running 10 s after quit (a stuck exec: target holds it)"
[ "$VMAD_RC" = 0 ] || fail "vmad exit status $VMAD_RC"
echo "vmad exited $((SECONDS - t0)) s after quit"
check_log
echo PASS
