#!/usr/bin/env bash
# Limits on what input may make us allocate (docs/security.md, "Limits"):
#  - an archive whose zero clusters touch a new 256 MiB region with every 8-byte entry
#    stops at the reader's region limit, and memory stays bounded (not 75 times the
#    input, as it would be without the limit);
#  - a restore-map line longer than 64 KiB is refused without reading it into memory;
#  - a backup's config-file must be a regular file of at most 65535 bytes: /dev/zero, a
#    FIFO without writer, a large file are refused at once (vmad neither hangs nor reads
#    forever on its main loop);
#  - more QMP clients than a monitor takes are disconnected, the others are served.
. "$(dirname "$0")/qmp-lib.bash"
export VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built"
requires python3

# Peak memory is checked only in a plain build (a sanitizer's shadow memory and
# quarantine would dominate it).
plain_build=1
ldd "$VMA" 2>/dev/null | grep -qE 'lib[at]san\.so' && plain_build=0

# peak_kib CMD...: run CMD, print "EXIT MAXRSS_KIB" (stdout and stderr in $T/cmd.out)
peak_kib() {
    python3 - "$@" <<'EOF'
import os, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
open(os.environ["T"] + "/cmd.out", "wb").write(p.stdout)
print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
EOF
}
export T

# ---- the reader's region limit ---------------------------------------------------------
python3 - "$T/scatter.vma" "$SRCDIR/tests/cli" <<'EOF' || fail "crafting scatter.vma"
import hashlib, struct, sys
sys.path.insert(0, sys.argv[2])
import mkvma
# four devices of 256 TiB; zero clusters (mask 0), each in a 256 MiB region of its own:
# 4 * 2^20 entries, 36 MiB of stream, four times the reader's region limit
spec = {"devices": [{"name": "drive-scsi%d" % i, "size": 1 << 48, "emit": False}
                    for i in range(4)]}
out = bytearray(mkvma.build(spec))
uuid = bytes.fromhex("0123456789abcdef0123456789abcdef")
head = b"VMAE" + bytes(4) + uuid
vals = [((1 + (k >> 20)) << 32) | ((k & 0xfffff) * 4096) for k in range(4 << 20)]
for start in range(0, len(vals), 59):
    group = vals[start:start + 59]
    group += [0] * (59 - len(group))
    eh = head + bytes(16) + struct.pack(">59Q", *group)
    eh = eh[:24] + hashlib.md5(eh).digest() + eh[40:]
    out += eh
open(sys.argv[1], "wb").write(out)
EOF
read -r rc kib < <(peak_kib "$VMA" verify "$T/scatter.vma")
[ "$rc" = 1 ] || fail "verify of scatter.vma exited $rc: $(cat "$T/cmd.out")"
echo "verify scatter.vma ($(stat -c %s "$T/scatter.vma") bytes): peak $((kib / 1024)) MiB"
grep -q 'clusters spread over more than 1048576 regions of 256 MiB' "$T/cmd.out" ||
    fail "verify of scatter.vma: $(cat "$T/cmd.out")"
if [ $plain_build = 1 ] && [ "$kib" -gt $((900 * 1024)) ]; then
    fail "verify of scatter.vma peaked at $((kib / 1024)) MiB"
fi

# ---- restore map: a line longer than 64 KiB ---------------------------------------------
printf 'memory: 1\n' >"$T/c.conf"
head -c 70000 /dev/urandom >"$T/d.raw"
"$VMA" create -c "$T/c.conf" "$T/small.vma" drive-scsi0="$T/d.raw" || fail "create"
mkfifo "$T/map"
# 64 MiB without a newline: read into memory whole, this would show in the peak
( head -c $((64 << 20)) /dev/zero | tr '\0' a >"$T/map" ) 2>/dev/null &
writer=$!
read -r rc kib < <(peak_kib "$VMA" extract -r "$T/map" "$T/small.vma" "$T/x")
kill "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
[ "$rc" = 1 ] || fail "extract with a long map line exited $rc: $(cat "$T/cmd.out")"
echo "extract with a 64 MiB map line: peak $((kib / 1024)) MiB"
grep -q 'line 1: longer than 65536 bytes' "$T/cmd.out" || fail "long map line: $(cat "$T/cmd.out")"
if [ $plain_build = 1 ] && [ "$kib" -gt $((32 * 1024)) ]; then
    fail "extract with a long map line peaked at $((kib / 1024)) MiB"
fi

# ---- vmad: config files, QMP clients ----------------------------------------------------
truncate -s 1M "$T/disk.raw"
mkfifo "$T/fifo"
head -c 65536 /dev/zero | tr '\0' x >"$T/big.conf"
start_vmad --monitor "$T/qmp.sock" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/disk.raw"
wait_socket "$T/qmp.sock"
py "$T" <<'EOF' || fail "vmad limits"
import os, socket, sys, time
from qmp import QMP, expect_error
T = sys.argv[1]
q = QMP(T + "/qmp.sock")
q.negotiate()
for path, why in (("/dev/zero", "unable to read file"), (T + "/fifo", "unable to read file"),
                  (T + "/big.conf", "too large")):
    t = time.monotonic()
    r = q.cmd("backup", {"backup-file": T + "/out.vma", "config-file": path})
    expect_error(r, "GenericError")
    assert why in r["error"]["desc"], r
    assert time.monotonic() - t < 5, "config-file %s took %.1f s" % (path, time.monotonic() - t)
    assert not os.path.exists(T + "/out.vma")
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
