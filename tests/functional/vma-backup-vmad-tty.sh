#!/usr/bin/env bash
# `vma backup` on a terminal (a pty): one progress line redrawn with \r and erase-line,
# the summary on lines of its own; '-' is refused on a terminal.
. "$(dirname "$0")/vma-backup-vmad.bash"

py "$VMA" "$S" "$T" <<'EOF' || fail "terminal mode"
import os, pty, sys
vma, sock, T = sys.argv[1:4]

def run(args):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(vma, [vma, "backup", "--qmp", sock] + args)
    out = b""
    while True:
        try:
            d = os.read(fd, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out.decode()

rc, out = run(["--speed", "16M", "--interval", "0.1", T + "/tty.vma"])
assert rc == 0, (rc, out)
assert "\rINFO: " in out and "\x1b[K" in out, repr(out)
assert out.count("\rINFO: ") >= 2, repr(out)
lines = out.split("\r\n")
assert lines[-1] == "", repr(out)
assert lines[-2].startswith("INFO: transferred 35.00 MiB"), repr(out)
assert "INFO: 100% (35.0 MiB of 35.0 MiB)" in lines[-4], repr(out)

rc, out = run(["-"])
assert rc == 1, (rc, out)
assert out == "vma: backup: refusing to write the archive to a terminal\r\n", repr(out)
EOF
check_extract "$T/tty.vma" "$T/x5" drive-scsi0="$T/a.raw" drive-scsi1="$T/b.raw"
quit_vmad
echo PASS
