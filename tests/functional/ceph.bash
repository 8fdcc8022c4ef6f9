# tests/functional/ceph.bash — a one-node Ceph cluster for the RBD tests (sourced).
#
# Source it after tests/lib.bash (or a library that sources it). ceph_start brings up a
# private cluster on 127.0.0.1 inside a temporary directory of its own: one monitor, one
# OSD on memstore (data in RAM, nothing on disk; the fastest store to start), cephx on, a
# pool with one replica, no /etc/ceph, no /var/lib/ceph, no systemd. The daemons run in
# the foreground of this shell (-f), so their pids are ours: they are registered with
# cleanup_pid and killed (SIGKILL, which memstore wants: it has nothing to save) and
# reaped at exit, and the directory is removed. A test brings the cluster up once.
#
#   requires_ceph          skip unless the Ceph daemons and tools are installed
#   requires_qemu_rbd      skip unless QEMU's rbd driver (qemu-block-extra) is installed
#   ceph_start [POOL]      start the cluster and create POOL (default rbd) initialised for
#                          RBD; sets and exports CEPH_DIR, CEPH_CONF (the config file:
#                          clients need nothing else, its keyring line names the admin
#                          key), CEPH_POOL, CEPH_MON_PID, CEPH_OSD_PID, CEPH_UP_SECS
#                          (bring-up time); prints "ceph: up in S s"
#   ceph_cli ARGS...       the ceph CLI on this cluster, with a timeout
#   rbd_cli ARGS...        the rbd CLI on this cluster, with a timeout
#   rbd_uri IMAGE          QEMU's legacy file name of POOL/IMAGE: rbd:POOL/IMAGE:conf=FILE
#   ceph_kill_osd          SIGKILL the OSD (I/O of clients then blocks until their timeout)
#   ceph_stop              SIGKILL every daemon of the cluster now
#
# Ports. The monitor's two ports (msgr v2 and v1) are asked of the kernel (bound to port
# 0 and released) and checked free once more just before ceph-mon starts; if it still
# fails to bind (another run took the port meanwhile), the start is retried with new
# ports. The OSD picks free ports in 6800-7300 itself. So two test runs on one machine
# do not clash.
#
# Client timeouts. `rados osd op timeout` and `rados mon op timeout` are set in the
# config (CEPH_CLIENT_TIMEOUT, default 20 s): a client whose cluster went away gets
# -ETIMEDOUT instead of waiting forever, which the "cluster stopped" tests rely on.
#
# Facts behind the settings (a short paxos propose interval, polling for the OSD to be up
# before the first client I/O, memstore page sets, one replica) are in the reference
# notes on bringing up a one-node Ceph; the lock on images: create test images with
# `--image-feature layering` unless the test is about exclusive-lock, since a client
# killed without closing its image leaves a lock the next writer waits for.

CEPH_CLIENT_TIMEOUT=${CEPH_CLIENT_TIMEOUT:-20}
CEPH_DIR=
CEPH_CONF=
CEPH_POOL=
CEPH_MON_PID=
CEPH_OSD_PID=
CEPH_UP_SECS=

requires_ceph() {
    requires ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd uuidgen
}

requires_qemu_rbd() {
    ls /usr/lib/*/qemu/block-rbd.so >/dev/null 2>&1 ||
        skip "SKIP: QEMU's rbd driver (qemu-block-extra) is not installed"
}

ceph_cli() {
    timeout --kill-after=5 60 ceph -c "$CEPH_CONF" --connect-timeout 30 "$@"
}

rbd_cli() {
    timeout --kill-after=5 120 rbd -c "$CEPH_CONF" "$@"
}

rbd_uri() {
    printf 'rbd:%s/%s:conf=%s' "$CEPH_POOL" "$1" "$CEPH_CONF"
}

# Two free TCP ports on 127.0.0.1, printed on one line.
_ceph_free_ports() {
    python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

_ceph_port_free() {
    python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

_ceph_write_conf() {
    local d=$CEPH_DIR
    cat >"$CEPH_CONF" <<EOF
[global]
fsid = $CEPH_FSID
mon host = [v2:127.0.0.1:$1,v1:127.0.0.1:$2]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $d/client.admin.keyring
run dir = $d/run
admin socket = $d/run/\$name.asok
pid file = $d/run/\$name.pid
log file = $d/log/\$name.log
crash dir = $d/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.1
rados osd op timeout = $CEPH_CLIENT_TIMEOUT
rados mon op timeout = $CEPH_CLIENT_TIMEOUT
client mount timeout = $CEPH_CLIENT_TIMEOUT

[mon]
mon data = $d/mon/\$cluster-\$id
keyring = $d/mon/\$cluster-\$id/keyring
mon memory target = 256M
mon cluster log file = $d/log/cluster.log

[osd]
osd data = $d/osd/\$cluster-\$id
keyring = $d/osd/\$cluster-\$id/keyring
osd memory target = 1G
osd class update on start = false
osd client watch timeout = 10
osd op num shards = 1
osd op num threads per shard = 2
osd objectstore = memstore
memstore device bytes = 4294967296
memstore page set = true
EOF
}

# Start the monitor on ports $1 (v2) and $2 (v1); 1 if it did not come up.
_ceph_start_mon() {
    local d=$CEPH_DIR i
    rm -rf "$d/mon" && mkdir -p "$d/mon/ceph-a"
    _ceph_write_conf "$1" "$2"
    monmaptool --create --fsid "$CEPH_FSID" --addv a "[v2:127.0.0.1:$1,v1:127.0.0.1:$2]" \
        "$d/monmap" >/dev/null || return 1
    ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$d/monmap" --keyring "$d/mon.keyring" \
        >>"$d/log/setup.log" 2>&1 || return 1
    _ceph_port_free "$1" && _ceph_port_free "$2" || return 1
    ceph-mon -c "$CEPH_CONF" -i a -f >>"$d/log/mon.out" 2>&1 </dev/null &
    CEPH_MON_PID=$!
    cleanup_pid "$CEPH_MON_PID"
    # the monitor's admin socket appears once it has bound its ports and started
    for i in $(seq 1 100); do
        kill -0 "$CEPH_MON_PID" 2>/dev/null || return 1
        if [ -S "$d/run/mon.a.asok" ] && timeout 10 ceph -c "$CEPH_CONF" --connect-timeout 5 \
            mon stat >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

ceph_start() {
    local pool=${1:-rbd} t0 d ports attempt ok=0 ouuid key i
    requires_ceph
    t0=$(date +%s.%N)
    new_tmpdir CEPH_DIR
    d=$CEPH_DIR
    CEPH_CONF=$d/ceph.conf
    CEPH_POOL=$pool
    CEPH_FSID=$(uuidgen)
    # exported at the end: the ceph tools read $CEPH_CONF, which is not written yet
    mkdir -p "$d/run" "$d/log" "$d/crash" "$d/osd/ceph-0"
    on_fail "_ceph_show_logs"

    ceph-authtool --create-keyring "$d/mon.keyring" --gen-key -n mon. --cap mon 'allow *' \
        >/dev/null || fail "ceph: mon key"
    ceph-authtool --create-keyring "$d/client.admin.keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' \
        >/dev/null || fail "ceph: admin key"
    ceph-authtool "$d/mon.keyring" --import-keyring "$d/client.admin.keyring" >/dev/null ||
        fail "ceph: import admin key"

    for attempt in 1 2 3; do
        read -r -a ports < <(_ceph_free_ports)
        if _ceph_start_mon "${ports[0]}" "${ports[1]}"; then
            ok=1
            break
        fi
        if [ -n "$CEPH_MON_PID" ]; then
            kill -9 "$CEPH_MON_PID" 2>/dev/null
            wait "$CEPH_MON_PID" 2>/dev/null
            forget_pid "$CEPH_MON_PID"
            CEPH_MON_PID=
        fi
    done
    [ $ok = 1 ] || fail "ceph: the monitor did not start (3 attempts)"

    ouuid=$(uuidgen)
    key=$(ceph-authtool --gen-print-key)
    echo "{\"cephx_secret\": \"$key\"}" | ceph_cli osd new "$ouuid" -i - >/dev/null ||
        fail "ceph: osd new"
    ceph-authtool --create-keyring "$d/osd/ceph-0/keyring" -n osd.0 --add-key "$key" \
        >/dev/null || fail "ceph: osd key"
    ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$ouuid" >>"$d/log/setup.log" 2>&1 ||
        fail "ceph: osd mkfs"
    ceph-osd -c "$CEPH_CONF" -i 0 -f >>"$d/log/osd.out" 2>&1 </dev/null &
    CEPH_OSD_PID=$!
    cleanup_pid "$CEPH_OSD_PID"
    ceph_cli osd pool create "$pool" 8 8 >/dev/null 2>&1 || fail "ceph: pool create $pool"
    # a client that starts before the OSD is up sees it only at its next tick (5 s)
    for i in $(seq 1 150); do
        kill -0 "$CEPH_OSD_PID" 2>/dev/null || fail "ceph: the OSD exited"
        [ "$(ceph_cli osd stat -f json 2>/dev/null | python3 -c \
            'import json,sys; print(json.load(sys.stdin)["num_up_osds"])' 2>/dev/null)" = 1 ] &&
            break
        sleep 0.2
    done
    rbd_cli pool init "$pool" || fail "ceph: rbd pool init $pool"
    CEPH_UP_SECS=$(python3 -c "import sys; print('%.1f' % ($(date +%s.%N) - $t0))")
    export CEPH_DIR CEPH_CONF CEPH_POOL CEPH_UP_SECS
    echo "ceph: up in $CEPH_UP_SECS s (mon $CEPH_MON_PID, osd $CEPH_OSD_PID, $CEPH_CONF)"
}

_ceph_show_logs() {
    local f
    [ -n "$CEPH_DIR" ] && [ -d "$CEPH_DIR/log" ] || return 0
    for f in "$CEPH_DIR"/log/*.out "$CEPH_DIR/log/setup.log"; do
        [ -s "$f" ] || continue
        echo "--- ceph $(basename "$f") (last lines) ---" >&2
        grep -v '^$' "$f" | tail -n 5 >&2
    done
}

_ceph_kill() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget_pid "$pid"
}

ceph_kill_osd() {
    _ceph_kill "$CEPH_OSD_PID"
    CEPH_OSD_PID=
}

ceph_stop() {
    ceph_kill_osd
    _ceph_kill "$CEPH_MON_PID"
    CEPH_MON_PID=
}
