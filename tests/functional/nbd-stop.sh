#!/usr/bin/env bash
# Stopping the server with clients connected: an idle client, a client in the middle
# of the handshake and a busy fio client. The server must exit 0 promptly, remove its
# socket, and every write it acknowledged must be in the image.
. "$(dirname "$0")/lib.bash"
requires qemu-io fio python3

truncate -s 64M "$T/disk.raw"
start_server --blockdev disk0,"$T/disk.raw" --export disk0,writable
qio disk0 'write -P 0x99 0 1M'

# an idle connection that completed the handshake, and one that never speaks
python3 - "$NBD_SOCK" <<'PY' &
import socket, struct, sys, time
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); return s
idle = conn(); idle.recv(18); idle.sendall(struct.pack(">I", 3))
n = b"disk0"
idle.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 4 + len(n) + 2) +
             struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
silent = conn()
time.sleep(60)
PY
cleanup_pid $!
fio --name=busy --ioengine=nbd --uri="$(nbd_uri disk0)" --size=32M --offset=16M --bs=64k \
    --iodepth=16 --rw=randwrite --time_based --runtime=30 >"$T/fio.log" 2>&1 &
fio_pid=$!
cleanup_pid $fio_pid
sleep 2

start=$(date +%s)
stop_server
took=$(( $(date +%s) - start ))
echo "stopped in ${took}s"
[ $took -le 15 ] || fail "stop took ${took}s"
wait $fio_pid 2>/dev/null
cmp -s <(head -c 1M "$T/disk.raw") <(head -c 1M /dev/zero | tr '\0' '\231') ||
    fail "data written before the stop is gone"
echo PASS
