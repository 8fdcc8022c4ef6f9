# guest.bash — boot a real test guest whose virtio disks are NBD exports. Source it.
#
# The guest is Debian's cloud kernel plus a busybox initramfs (scripts/guest-kernel.sh,
# scripts/guest-initrd.sh; the latter documents what the guest does in each mode and
# which console lines it prints). QEMU runs under TCG (no KVM on the build machines).
# Measured on a 2-core build machine: one cycle (start the server, boot to GUEST-READY,
# write and verify 1 MiB, power off, stop the server, check the image) takes 3.3 s quiet
# (2.5-2.8 s of it the kernel boot) and 5.5 s with both cores busy; the default timeout
# (GUEST_TIMEOUT, 120 s) leaves ample room for a loaded CI runner.
#
#   guest_prepare
#       Fetch the kernel (network, first use only; cached in $BUILDDIR/guest) and build
#       the initramfs (cached by content hash). Exits 77 with a reason only when
#       qemu-system-x86_64 is missing; any other problem exits 1.
#   guest_boot SOCK EXPORT[,EXPORT...] MODE [NAME=VALUE...]
#       Start QEMU in the background: one virtio-blk disk per export of the NBD server on
#       UNIX socket SOCK (first = /dev/vda), guest.mode=MODE, guest.disks=<count>, and
#       guest.NAME=VALUE for each further argument. Sets GUEST_PID and GUEST_LOG (the
#       console log). Call it directly, not in $(...). GUEST_NBD_OPTS, if set, is appended
#       to every -blockdev (e.g. reconnect-delay=20).
#   guest_wait PID [TIMEOUT]
#       Wait for the guest to power off (default GUEST_TIMEOUT, 120 s); print its
#       GUEST-RESULT line (a synthetic "GUEST-RESULT: fail ..." on timeout, which kills
#       QEMU, or when the guest printed none). Returns 0 only for "GUEST-RESULT: ok".
#       On failure the end of the console log goes to stderr.
#   guest_wait_for PID REGEX [TIMEOUT]
#       Wait until a console line matches the extended REGEX (e.g. '^GUEST-GEN 3$');
#       print it. Returns 1 on timeout or if the guest ended first.
#   guest_last_gen PID           the highest GUEST-GEN number printed so far (0 if none)
#   guest_stop_loop SOCK EXPORT BLOCK
#       Write the loop-mode stop marker into 4 KiB block BLOCK of the export (qemu-io,
#       a second NBD client).
#   guest_kill PID               stop one guest (TERM, then KILL)
#   guest_cleanup                stop every guest this shell started; remove own temp files
#   guest_server_start SOCK NODE=IMAGE [NODE=IMAGE...]
#       Start the NBD server under test, serving each IMAGE (raw) writable as export NODE
#       on UNIX socket SOCK; sets GUEST_SERVER_PID. guest_server_stop stops it (TERM,
#       waits, so the images are complete afterwards). See GUEST_NBD_SERVER below.
#
# Sourcing this file sources tests/lib.bash (fail, skip, $T, ...) unless that happened
# already, and registers guest_cleanup to run at exit: nothing here outlives the test.

. "$(dirname "${BASH_SOURCE[0]}")/../lib.bash"
on_exit guest_cleanup
GUEST_DIR=${GUEST_DIR:-$BUILDDIR/guest}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-120}
GUEST_CHECK="$SRCDIR/tests/functional/guest-check.py"

# --------------------------------------------------------------------------------------
# NBD SERVER UNDER TEST. The committed value is vmad ($VMAD); a missing vmad is a test
# failure, never a skip. Only to develop or cross-check the guest harness itself, run a
# test with GUEST_NBD_SERVER=qemu-storage-daemon: it takes the very same command line.
GUEST_NBD_SERVER=${GUEST_NBD_SERVER:-vmad}
# --------------------------------------------------------------------------------------

_guest_pids=()
declare -A _guest_logs=()
_guest_tmp=
_guest_seq=0
GUEST_SERVER_PID=
_guest_server_fork=

guest_prepare() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 ||
        skip "qemu-system-x86_64 not found (install qemu-system-x86)"
    "$SRCDIR/scripts/guest-kernel.sh" "$GUEST_DIR" ||
        fail "guest_prepare: scripts/guest-kernel.sh $GUEST_DIR failed"
    "$SRCDIR/scripts/guest-initrd.sh" "$GUEST_DIR" ||
        fail "guest_prepare: scripts/guest-initrd.sh $GUEST_DIR failed"
    GUEST_KERNEL=$GUEST_DIR/vmlinuz
    GUEST_INITRD=$GUEST_DIR/initrd.gz
    [ -n "$_guest_tmp" ] || new_tmpdir _guest_tmp
}

guest_boot() {
    if [ $# -lt 3 ]; then
        echo "usage: guest_boot SOCK EXPORT[,EXPORT...] MODE [NAME=VALUE...]" >&2
        return 2
    fi
    if [ -z "${GUEST_KERNEL:-}" ]; then
        echo "guest_boot: call guest_prepare first" >&2
        return 2
    fi
    local sock=$1 exports=$2 mode=$3 e n=0 p
    shift 3
    local -a list devs=()
    IFS=, read -r -a list <<<"$exports"
    for e in "${list[@]}"; do
        devs+=(-blockdev "driver=nbd,node-name=nbd$n,server.type=unix,server.path=$sock,export=$e,cache.direct=on${GUEST_NBD_OPTS:+,$GUEST_NBD_OPTS}"
               -device "virtio-blk-pci,drive=nbd$n")
        n=$((n + 1))
    done
    local append="console=ttyS0 panic=-1 quiet loglevel=3 guest.mode=$mode guest.disks=$n"
    for p in "$@"; do
        append+=" guest.$p"
    done
    _guest_seq=$((_guest_seq + 1))
    GUEST_LOG=$_guest_tmp/guest.$_guest_seq.log
    qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nographic -nodefaults -no-reboot \
        -serial stdio -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$append" \
        "${devs[@]}" </dev/null >"$GUEST_LOG" 2>&1 &
    GUEST_PID=$!
    _guest_pids+=("$GUEST_PID")
    _guest_logs[$GUEST_PID]=$GUEST_LOG
}

# True while PID runs (an exited but not yet reaped child counts as gone).
_guest_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

# The console log without carriage returns.
_guest_console() {
    tr -d '\r' <"${_guest_logs[$1]}"
}

_guest_dump() {
    echo "---- guest $1 console (last 30 lines) ----" >&2
    _guest_console "$1" | tail -n 30 >&2
    echo "----" >&2
}

guest_wait() {
    local pid=$1 timeout=${2:-$GUEST_TIMEOUT} line
    if [ -z "${_guest_logs[$pid]:-}" ]; then
        echo "guest_wait: $pid is not a guest of this shell" >&2
        return 2
    fi
    local deadline=$((SECONDS + timeout))
    while _guest_alive "$pid"; do
        if [ $SECONDS -ge $deadline ]; then
            guest_kill "$pid"
            echo "GUEST-RESULT: fail timeout: guest still running after ${timeout}s"
            _guest_dump "$pid"
            return 1
        fi
        sleep 0.2
    done
    if [ "$BASHPID" = "$$" ]; then
        wait "$pid" 2>/dev/null
    fi
    line=$(_guest_console "$pid" | grep -a -o 'GUEST-RESULT: .*' | tail -n 1)
    if [ -z "$line" ]; then
        echo "GUEST-RESULT: fail no result line: guest (or QEMU) ended without one"
        _guest_dump "$pid"
        return 1
    fi
    echo "$line"
    if [ "$line" != "GUEST-RESULT: ok" ]; then
        _guest_dump "$pid"
        return 1
    fi
}

guest_wait_for() {
    local pid=$1 re=$2 timeout=${3:-$GUEST_TIMEOUT} line
    local deadline=$((SECONDS + timeout))
    while :; do
        line=$(_guest_console "$pid" | grep -a -E -m 1 "$re")
        if [ -n "$line" ]; then
            echo "$line"
            return 0
        fi
        if ! _guest_alive "$pid"; then
            echo "guest_wait_for: guest $pid ended before printing /$re/" >&2
            _guest_dump "$pid"
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "guest_wait_for: no /$re/ from guest $pid within ${timeout}s" >&2
            _guest_dump "$pid"
            return 1
        fi
        sleep 0.2
    done
}

guest_last_gen() {
    local g
    g=$(_guest_console "$1" | sed -n 's/^GUEST-GEN \([0-9][0-9]*\)$/\1/p' | tail -n 1)
    echo "${g:-0}"
}

guest_stop_loop() {
    qemu-io -f raw "nbd+unix:///$2?socket=$1" -c "write -P 0x53 $(($3 * 4096)) 4096" >/dev/null
}

guest_kill() {
    local pid=$1 i
    if _guest_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 50); do
            _guest_alive "$pid" || break
            sleep 0.1
        done
        _guest_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    if [ "$BASHPID" = "$$" ]; then
        wait "$pid" 2>/dev/null
    fi
    return 0
}

guest_server_start() {
    local sock=$1 pidfile spec node img i bin
    shift
    local -a blockdevs=() exports=()
    case "$GUEST_NBD_SERVER" in
    vmad)
        bin=${VMAD:-}
        if [ -z "$bin" ] || [ ! -x "$bin" ]; then
            echo "guest_server_start: vmad not built (VMAD=${VMAD:-unset}): this test needs it" >&2
            return 1
        fi
        ;;
    qemu-storage-daemon)
        bin=$(command -v qemu-storage-daemon) ||
            { echo "guest_server_start: qemu-storage-daemon not found" >&2; return 1; }
        echo "guest_server_start: NOTE: serving with qemu-storage-daemon, not vmad" >&2
        ;;
    *)
        echo "guest_server_start: unknown GUEST_NBD_SERVER '$GUEST_NBD_SERVER'" >&2
        return 1
        ;;
    esac
    i=0
    for spec in "$@"; do
        node=${spec%%=*} img=${spec#*=}
        blockdevs+=(--blockdev "driver=file,node-name=$node,filename=$img")
        exports+=(--export "type=nbd,id=e$i,node-name=$node,writable=on")
        i=$((i + 1))
    done
    pidfile=$_guest_tmp/server.$_guest_seq.pid
    _guest_seq=$((_guest_seq + 1))
    rm -f "$sock" "$pidfile"
    # blockdevs, then the server, then the exports (the order QEMU's daemons require)
    "$bin" "${blockdevs[@]}" --nbd-server "addr.type=unix,addr.path=$sock" "${exports[@]}" \
        --pidfile "$pidfile" \
        </dev/null >"$_guest_tmp/server.log" 2>&1 &
    _guest_server_fork=$!
    GUEST_SERVER_PID=$_guest_server_fork
    for i in $(seq 300); do
        if [ -S "$sock" ]; then
            if _guest_alive "$_guest_server_fork"; then
                return 0
            fi
            # a daemonizing server's parent has exited: its pid file names the daemon
            if [ -s "$pidfile" ]; then
                GUEST_SERVER_PID=$(cat "$pidfile")
                _guest_alive "$GUEST_SERVER_PID" && return 0
            fi
        fi
        if ! _guest_alive "$_guest_server_fork" && ! [ -s "$pidfile" ]; then
            break
        fi
        sleep 0.1
    done
    echo "guest_server_start: $GUEST_NBD_SERVER did not come up on $sock; its output:" >&2
    sed 's/^/    /' "$_guest_tmp/server.log" >&2
    guest_server_stop
    return 1
}

guest_server_stop() {
    local pid i
    for pid in $GUEST_SERVER_PID $_guest_server_fork; do
        [ -n "$pid" ] || continue
        if _guest_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null
            for i in $(seq 100); do
                _guest_alive "$pid" || break
                sleep 0.1
            done
            _guest_alive "$pid" && kill -KILL "$pid" 2>/dev/null
        fi
    done
    if [ -n "$_guest_server_fork" ] && [ "$BASHPID" = "$$" ]; then
        wait "$_guest_server_fork" 2>/dev/null
    fi
    GUEST_SERVER_PID=
    _guest_server_fork=
    return 0
}

guest_cleanup() {
    local pid
    for pid in "${_guest_pids[@]}"; do
        guest_kill "$pid"
    done
    _guest_pids=()
    guest_server_stop
    if [ -n "$_guest_tmp" ]; then
        rm -rf "$_guest_tmp"
        _guest_tmp=
    fi
}
