#!/usr/bin/env bash
# Image locking against real QEMU tools: vmad takes QEMU's OFD lock bytes on every image it
# opens (read-write: 100 101 103 201 203, read-only: 100 201 203), so
#   * a second vmad, or a second writable node in the same vmad, is refused with QEMU's
#     message, and the first keeps serving;
#   * qemu-io cannot write an image vmad serves (QEMU's own locking refuses it), while
#     qemu-img info -U and a read-only qemu-io may read it;
#   * vmad refuses an image qemu-io holds open for writing;
#   * read-only nodes of one image coexist (in one vmad and across two);
#   * locking=off takes and checks nothing; a bad value gets QEMU's message;
#   * the bytes go away with the node (blockdev-del) and with the process.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io qemu-img

EXTRA=()
_lock_cleanup() {
    local p
    for p in "${EXTRA[@]}"; do
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    _qmp_cleanup
}
trap _lock_cleanup EXIT

truncate -s 16M "$T/a.raw" "$T/b.raw" "$T/c.raw"

# locked_bytes FILE: the bytes of FILE locked by anyone, one "BYTE" per lock, sorted
locked_bytes() {
    local id
    id=$(printf '%02x:%02x:%s' $(stat -c '%Hd %Ld %i' "$1"))
    awk -v id="$id" '$2 != "->" && $6 == id { for (b = $7; b <= $8; b++) print b }' \
        /proc/locks | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# expect_refused PATTERN ARGS...: vmad ARGS exits 1 with the one stderr line PATTERN
expect_refused() {
    local pattern=$1 rc=0
    shift
    timeout 10 "$VMAD" "$@" >"$T/out2" 2>"$T/err2" || rc=$?
    [ $rc = 1 ] || fail "vmad $*: exit status $rc, expected 1 ($(cat "$T/err2"))"
    [ "$(wc -l <"$T/err2")" = 1 ] || fail "vmad $*: stderr not one line: $(cat "$T/err2")"
    grep -qE "^vmad: $pattern\$" "$T/err2" || fail "vmad $*: '$(cat "$T/err2")' !~ '$pattern'"
}

# start_second NAME ARGS...: a further vmad that must start; its pid in EXTRA and $SECOND
start_second() {
    local name=$1 i
    shift
    "$VMAD" "$@" --pidfile "$T/$name.pid" >>"$T/$name.log" 2>&1 &
    SECOND=$!
    EXTRA+=("$SECOND")
    for i in $(seq 1 200); do
        [ -s "$T/$name.pid" ] && return 0
        kill -0 "$SECOND" 2>/dev/null || fail "vmad $name did not start: $(cat "$T/$name.log")"
        sleep 0.05
    done
    fail "vmad $name not ready after 10 s"
}

stop_second() {
    kill -TERM "$1"
    wait "$1" || fail "vmad pid $1 exited with status $?"
}

# wait_locked FILE BYTES: until FILE's locks are exactly BYTES (or fail after 10 s)
wait_locked() {
    local i
    for i in $(seq 1 200); do
        [ "$(locked_bytes "$1")" = "$2" ] && return 0
        sleep 0.05
    done
    fail "$1: locked bytes '$(locked_bytes "$1")', expected '$2'"
}

A="driver=file,node-name=d0,filename=$T/a.raw"
HINT="Is another process using the image \\[$T/a.raw\\]\\?"

# ---- vmad A serves a.raw read-write ----
start_vmad --blockdev "$A" --monitor "$T/m.sock" \
    --nbd-server "addr.type=unix,addr.path=$T/n.sock" \
    --export "type=nbd,id=e0,node-name=d0,writable=on"
wait_socket "$T/m.sock"
wait_socket "$T/n.sock"
[ "$(locked_bytes "$T/a.raw")" = "100 101 103 201 203" ] ||
    fail "a.raw served read-write: locked bytes '$(locked_bytes "$T/a.raw")'"

# a second vmad on the same image: refused, read-write or read-only
expect_refused "--blockdev $A: Failed to get \"write\" lock. $HINT" --blockdev "$A"
expect_refused "--blockdev $A,read-only=on: Failed to get shared \"write\" lock. $HINT" \
    --blockdev "$A,read-only=on"
expect_refused "--blockdev $A,locking=maybe: Parameter 'locking' does not accept value 'maybe'" \
    --blockdev "$A,locking=maybe"

# QEMU's own tools: no writer; readers that share writes are welcome
if qemu-io -f raw -c 'write -P 0x11 0 4k' "$T/a.raw" >"$T/qio.out" 2>"$T/qio.err"; then
    fail "qemu-io wrote an image vmad serves read-write"
fi
grep -qF "Failed to get \"write\" lock" "$T/qio.err" &&
    grep -qF "Is another process using the image [$T/a.raw]?" "$T/qio.err" ||
    fail "qemu-io's refusal: $(cat "$T/qio.err")"
qemu-img info -U "$T/a.raw" >"$T/info" 2>&1 || fail "qemu-img info -U: $(cat "$T/info")"
grep -q "virtual size: 16 MiB" "$T/info" || fail "qemu-img info -U: $(cat "$T/info")"
qemu-io -r -f raw -c 'read 0 4k' "$T/a.raw" >"$T/qio.out" 2>&1 ||
    fail "read-only qemu-io beside vmad: $(cat "$T/qio.out")"

# inside vmad A: a second node on the same file, writable or not, is refused too (OFD
# locks belong to an open file description, not to a process); another image is fine
py "$T" <<'EOF' || fail "second node on a.raw in the same vmad"
import sys
from qmp import QMP
T = sys.argv[1]
q = QMP(T + "/m.sock")
q.negotiate()
hint = " Is another process using the image [%s/a.raw]?" % T
r = q.cmd("blockdev-add", {"driver": "file", "node-name": "d1", "filename": T + "/a.raw"})
assert r["error"]["desc"] == 'Failed to get "write" lock.' + hint, r
r = q.cmd("blockdev-add", {"driver": "file", "node-name": "d1", "filename": T + "/a.raw",
                           "read-only": True})
assert r["error"]["desc"] == 'Failed to get shared "write" lock.' + hint, r
r = q.cmd("blockdev-add", {"driver": "file", "node-name": "d1", "filename": T + "/a.raw",
                           "locking": "sometimes"})
assert r["error"]["desc"] == "Parameter 'locking' does not accept value 'sometimes'", r
assert [b["device"] for b in q.ok("query-block")] == ["d0"]
q.ok("blockdev-add", {"driver": "file", "node-name": "d2", "filename": T + "/c.raw"})
EOF
wait_locked "$T/c.raw" "100 101 103 201 203"
py "$T" <<'EOF' || fail "blockdev-del releases the locks"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/m.sock")
q.negotiate()
q.ok("blockdev-del", {"node-name": "d2"})
EOF
wait_locked "$T/c.raw" ""

# the refusals did not disturb A: it still serves, the locks are as before
qemu-io -f raw -c 'write -P 0x5a 1M 64k' -c 'read -P 0x5a 1M 64k' \
    "nbd+unix:///d0?socket=$T/n.sock" >"$T/qio.out" 2>&1 ||
    fail "vmad A after the refusals: $(cat "$T/qio.out")"
grep -qiE "fail|error|mismatch" "$T/qio.out" && fail "vmad A: $(cat "$T/qio.out")"
[ "$(locked_bytes "$T/a.raw")" = "100 101 103 201 203" ] || fail "a.raw locks changed"

# locking=off: the second open proceeds (and holds nothing)
start_second off --blockdev "$A,locking=off"
[ "$(locked_bytes "$T/a.raw")" = "100 101 103 201 203" ] || fail "locking=off took locks"
stop_second "$SECOND"

kill -TERM "$VMAD_PID"
wait_exit 10
[ "$VMAD_RC" = 0 ] || fail "vmad A exit status $VMAD_RC"
wait_locked "$T/a.raw" ""

# ---- qemu-io holds b.raw open read-write: vmad refuses it ----
mkfifo "$T/qio.fifo"
qemu-io -f raw "$T/b.raw" <"$T/qio.fifo" >"$T/qio-hold.out" 2>&1 &
EXTRA+=("$!")
QIO_PID=$!
exec 8>"$T/qio.fifo"
wait_locked "$T/b.raw" "100 101"
B="driver=file,node-name=d0,filename=$T/b.raw"
HINT_B="Is another process using the image \\[$T/b.raw\\]\\?"
expect_refused "--blockdev $B: Failed to get shared \"write\" lock. $HINT_B" --blockdev "$B"
expect_refused "--blockdev $B,read-only=on: Failed to get shared \"write\" lock. $HINT_B" \
    --blockdev "$B,read-only=on"
start_second boff --blockdev "$B,locking=off"
stop_second "$SECOND"
echo quit >&8
exec 8>&-
wait "$QIO_PID" 2>/dev/null
wait_locked "$T/b.raw" ""

# ---- read-only nodes share: two in one vmad, one more in a second vmad ----
C="driver=file,filename=$T/c.raw,read-only=on"
start_vmad --blockdev "node-name=r0,$C" --blockdev "node-name=r1,$C" --monitor "$T/m2.sock"
wait_socket "$T/m2.sock"
start_second ro --blockdev "node-name=r2,$C"
wait_locked "$T/c.raw" "100 100 100 201 201 201 203 203 203"
qemu-io -r -f raw -c 'read 0 4k' "$T/c.raw" >"$T/qio.out" 2>&1 ||
    fail "read-only qemu-io beside read-only vmads: $(cat "$T/qio.out")"
qemu-img info -U "$T/c.raw" >"$T/info" 2>&1 || fail "qemu-img info -U: $(cat "$T/info")"
if qemu-io -f raw -c 'write 0 4k' "$T/c.raw" >"$T/qio.out" 2>"$T/qio.err"; then
    fail "qemu-io wrote an image vmad has open read-only"
fi
grep -qF "Failed to get \"write\" lock" "$T/qio.err" || fail "qemu-io: $(cat "$T/qio.err")"
# ... but no writer among them
expect_refused "--blockdev node-name=w0,driver=file,filename=$T/c.raw: Failed to get \"write\" lock. .*" \
    --blockdev "node-name=w0,driver=file,filename=$T/c.raw"
stop_second "$SECOND"
kill -9 "$VMAD_PID"
wait "$VMAD_PID" 2>/dev/null
VMAD_PID=
# locks do not outlive the process, even one killed hard
wait_locked "$T/c.raw" ""

check_log
echo "PASS"
