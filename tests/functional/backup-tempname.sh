#!/usr/bin/env bash
# A backup to a new file over QMP is written as .NAME.tmp-XXXXXX in the target directory
# and appears under NAME only when complete: kill -9 of vmad during a slow backup leaves
# the final name absent and only the hidden temporary file; a backup that runs to its end
# shows NAME only at the end (polled during the run: whenever NAME exists it is already
# the whole archive), with no temporary file left; a cancelled one leaves nothing.
. "$(dirname "$0")/qmp-lib.bash"
VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built (make)"
export VMA

mkdir "$T/out"
head -c 16M /dev/urandom >"$T/a.raw"
S=$T/qmp.sock

start() {
    rm -f "$S"
    start_vmad --monitor "$S" \
        --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw"
    wait_socket "$S"
}

# tmp_names NAME: the temporary files of NAME in $T/out
tmp_names() {
    find "$T/out" -maxdepth 1 -name ".$1.tmp-??????" -printf '%f\n'
}

# ---- kill -9 during a backup ------------------------------------------------------------
start
py "$T" <<'EOF' || fail "slow backup"
import os, sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=30)
q.negotiate()
final = T + "/out/killed.vma"
# 16 MiB at 2 MiB/s: about 8 s
q.ok("backup", {"backup-file": final, "speed": 2 << 20})
deadline = time.monotonic() + 20
while True:
    tmps = [f for f in os.listdir(T + "/out") if f.startswith(".killed.vma.tmp-")]
    if tmps and os.path.getsize(T + "/out/" + tmps[0]) >= 1 << 20:
        break
    assert time.monotonic() < deadline, "no temporary file with data: %r" % os.listdir(T + "/out")
    assert not os.path.exists(final), "the final name exists during the backup"
    time.sleep(0.05)
st = q.ok("query-backup")
assert st["status"] == "active", st
assert st["backup-file"] == final, st
assert not os.path.exists(final), "the final name exists during the backup"
EOF
kill -9 "$VMAD_PID"
wait "$VMAD_PID" 2>/dev/null
VMAD_PID=
[ ! -e "$T/out/killed.vma" ] || fail "kill -9: the partial archive is under its final name"
tmps=$(tmp_names killed.vma)
[ "$(printf '%s\n' "$tmps" | grep -c .)" = 1 ] ||
    fail "kill -9: want one temporary file, have: $(ls -A "$T/out")"
[ "$(ls -A "$T/out" | wc -l)" = 1 ] || fail "kill -9: more files than the temporary one: $(ls -A "$T/out")"
[ -s "$T/out/$tmps" ] || fail "kill -9: the temporary file is empty"
[ "$(stat -c %a "$T/out/$tmps")" = 600 ] || fail "kill -9: mode of $tmps is $(stat -c %a "$T/out/$tmps")"
# what is left is recognisably partial
"$VMA" verify "$T/out/$tmps" >/dev/null 2>&1 && fail "kill -9: the temporary file verifies as complete"
rm -f "$T/out/$tmps"

# ---- a backup that completes: the final name appears only at the end --------------------
start
py "$T" <<'EOF' || fail "backup to the end"
import os, subprocess, sys, time
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/qmp.sock", timeout=30)
q.negotiate()
final = T + "/out/done.vma"
q.ok("backup", {"backup-file": final, "speed": 8 << 20})
seen_tmp = 0        # polls that saw the temporary file growing and no final name
first_size = None   # size of the final file when it was first seen
last_tmp = 0
deadline = time.monotonic() + 60
while True:
    st = q.ok("query-backup")
    try:
        size = os.stat(final).st_size
        if first_size is None:
            first_size = size
    except FileNotFoundError:
        tmps = [f for f in os.listdir(T + "/out") if f.startswith(".done.vma.tmp-")]
        if st["status"] == "active" and tmps:
            try:
                n = os.path.getsize(T + "/out/" + tmps[0])
            except FileNotFoundError:
                n = 0       # renamed just now
            if n > last_tmp:
                seen_tmp += 1
                last_tmp = n
        assert st["status"] in ("active",), "backup ended without its final file: %r" % st
    if st["status"] != "active":
        break
    assert time.monotonic() < deadline, st
    time.sleep(0.02)
assert st["status"] == "done", st
assert seen_tmp >= 3, "the run was not observed (%d polls saw the temporary file grow)" % seen_tmp
final_size = os.path.getsize(final)
assert first_size == final_size, \
    "the final name existed with %d of %d bytes" % (first_size, final_size)
left = sorted(os.listdir(T + "/out"))
assert left == ["done.vma"], left
p = subprocess.run([os.environ["VMA"], "verify", final], capture_output=True, text=True)
assert p.returncode == 0, p.stdout + p.stderr

# a cancelled backup leaves neither name
final = T + "/out/cancelled.vma"
q.ok("backup", {"backup-file": final, "speed": 1 << 20})
time.sleep(0.3)
q.ok("backup-cancel")
deadline = time.monotonic() + 30
while q.ok("query-backup")["status"] == "active":
    assert time.monotonic() < deadline
    time.sleep(0.05)
st = q.ok("query-backup")
assert st["status"] == "error" and "canceled" in st.get("errmsg", ""), st
left = sorted(os.listdir(T + "/out"))
assert left == ["done.vma"], left

# an existing final name is refused at once, and nothing is created
from qmp import expect_error
r = q.cmd("backup", {"backup-file": T + "/out/done.vma"})
expect_error(r, "GenericError")
assert "File exists" in r["error"]["desc"], r
assert sorted(os.listdir(T + "/out")) == ["done.vma"]
q.ok("quit")
EOF
wait_exit 20
[ "$VMAD_RC" = 0 ] || fail "vmad exited $VMAD_RC"
check_log
exit 0
