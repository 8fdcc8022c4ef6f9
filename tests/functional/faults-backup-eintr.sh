#!/usr/bin/env bash
# vmad with EINTR on every 3rd I/O call and short transfers on every 2nd file transfer
# (tests/faultinj/faultinj.c) must behave exactly like an undisturbed one: backups to a
# file and to exec: while qemu-io writes over NBD are complete and exact, the guest's
# writes are on the disk, and vmad exits cleanly (in a sanitizer build: no leaks).
. "$(dirname "$0")/faults-backup.bash"

# shellcheck disable=SC2046
faulty "op=*,every=3,mode=eintr;op=pread|pwrite|preadv|pwritev|writev|read|write,path=/*,every=2,mode=short" \
    start_vmad $(vmad_args)
wait_socket "$T/qmp.sock"
py "$T" <<'EOF' || fail "vmad with EINTR and short transfers"
import sys
from faultsbackup import Faults

f = Faults(sys.argv[1])
q, T, qemu_io = f.q, f.T, f.qemu_io
for n, target in enumerate(["%s/out/one.vma" % T, "exec:cat >'%s/out/two.vma'" % T]):
    snap = f.snapshot()
    q.ok("backup", {"backup-file": target, "speed": 4 << 20})
    qemu_io("drive-scsi0", "write -P 0x4%d 0 8M" % n, "flush", "read -P 0x4%d 0 8M" % n)
    qemu_io("drive-scsi2", "write -P 0x5%d 4k 12k" % n, "flush")
    st = f.wait_done()
    assert st["status"] == "done", st
    path = "%s/out/%s.vma" % (T, ["one", "two"][n])
    f.check_archive(path, snap, "%s/x%d" % (T, n))
with open(T + "/a.raw", "rb") as fh:
    assert fh.read() == b"\x41" * (8 << 20)
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad (EINTR) exited with status $VMAD_RC"
[ "$(faults_injected eintr)" -gt 100 ] || fail "too few EINTR faults: $(faults_injected eintr)"
[ "$(faults_injected short)" -gt 100 ] || fail "too few short transfers: $(faults_injected short)"
check_log
echo PASS
