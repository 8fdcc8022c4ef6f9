#!/usr/bin/env python3
"""nbd-hostile.py — a raw-socket NBD client that misbehaves on purpose.

Usage: nbd-hostile.py ADDRESS WRITABLE_EXPORT RO_EXPORT SIZE [--max-connections N]
ADDRESS is a UNIX socket path or 127.0.0.1:PORT. Each case opens its own connection
and checks the server's exact answer: an error reply where the protocol allows one,
a closed connection where framing is lost. The server must survive all of it (the
calling test checks that a well-behaved client keeps working meanwhile).
With --max-connections N: check that connection N+1 is refused and N work.
Exit 0 if every case passed; prints one line per case.
"""
import os
import random
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPMAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR_UNSUP, ERR_POLICY, ERR_INVALID = 2**31 + 1, 2**31 + 2, 2**31 + 3
ERR_UNKNOWN = 2**31 + 6
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE = 0, 1, 2, 3, 4, 5
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7
F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE, F_FAST_ZERO = 1, 2, 4, 8, 16
EPERM, EINVAL, ENOSPC, ENOTSUP = 1, 22, 28, 95
FLAG_READ_ONLY, FLAG_SEND_TRIM = 2, 32
T_NONE, T_DATA, T_HOLE, T_BS, T_ERROR = 0, 1, 2, 5, 32769

ADDR = None
failures = 0


class Closed(Exception):
    pass


def connect():
    if ":" in ADDR and not ADDR.startswith("/"):
        host, port = ADDR.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=20)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(ADDR)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except ConnectionResetError:
            raise Closed()
        if not chunk:
            raise Closed()
        buf += chunk
    return buf


def expect_closed(s, what):
    """The server must close the connection (EOF or reset) without a reply."""
    try:
        s.settimeout(20)
        data = s.recv(65536)
        while data:
            data = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        raise AssertionError(what + ": connection not closed")
    s.close()


def greet(s, cflags=3):
    magic, opts, hflags = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == NBDMAGIC and opts == IHAVEOPT, "bad greeting"
    assert hflags == 3, "handshake flags %#x" % hflags
    s.sendall(struct.pack(">I", cflags))


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def recv_rep(s):
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == REPMAGIC, "bad reply magic %#x" % magic
    return opt, rtype, recv_exact(s, length)


def final_rep(s):
    """Collect replies up to the final ACK or error; return (final type, [replies])."""
    reps = []
    while True:
        opt, rtype, data = recv_rep(s)
        if rtype in (REP_INFO, REP_SERVER, REP_META):
            reps.append((rtype, data))
            continue
        return rtype, reps


def go_data(name, infos=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


def meta_data(name, queries):
    n = name.encode()
    d = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q
    return d


def open_export(name, structured=True, meta=True):
    s = connect()
    greet(s)
    if structured:
        send_opt(s, OPT_STRUCTURED)
        assert final_rep(s)[0] == REP_ACK
        if meta:
            send_opt(s, OPT_SET_META, meta_data(name, [b"base:allocation"]))
            rtype, reps = final_rep(s)
            assert rtype == REP_ACK and len(reps) == 1, "SET_META_CONTEXT failed"
    send_opt(s, OPT_GO, go_data(name))
    rtype, reps = final_rep(s)
    assert rtype == REP_ACK, "GO failed: %#x" % rtype
    size = flags = None
    for t, d in reps:
        if t == REP_INFO and struct.unpack(">H", d[:2])[0] == 0:
            _, size, flags = struct.unpack(">HQH", d)
    return s, size, flags


def request(s, cmd, offset=0, length=0, flags=0, cookie=None, payload=b""):
    if cookie is None:
        cookie = random.getrandbits(64)
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, offset, length) + payload)
    return cookie


def simple_reply(s, cookie, datalen=0):
    magic, err, ck = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_MAGIC, "expected a simple reply, magic %#x" % magic
    assert ck == cookie, "cookie mismatch"
    data = recv_exact(s, datalen) if err == 0 and datalen else b""
    return err, data


def any_reply(s):
    """One reply of a structured connection: (cookie, error, [(type, payload)])."""
    magic = struct.unpack(">I", recv_exact(s, 4))[0]
    if magic == SIMPLE_MAGIC:
        err, ck = struct.unpack(">IQ", recv_exact(s, 12))
        return ck, err, []
    assert magic == STRUCT_MAGIC, "bad reply magic %#x" % magic
    chunks, err = [], 0
    while True:
        flags, ctype, ck, length = struct.unpack(">HHQI", recv_exact(s, 16))
        payload = recv_exact(s, length)
        if ctype == T_ERROR:
            err = struct.unpack(">I", payload[:4])[0]
        chunks.append((ctype, payload))
        if flags & 1:
            return ck, err, chunks
        assert struct.unpack(">I", recv_exact(s, 4))[0] == STRUCT_MAGIC


def case(fn):
    global failures
    name = fn.__name__
    try:
        fn()
        print("ok   " + name)
    except AssertionError as e:
        failures += 1
        print("FAIL %s: %s" % (name, e))
    except Closed:
        failures += 1
        print("FAIL %s: connection closed unexpectedly" % name)
    except Exception as e:  # noqa: BLE001 - report anything
        failures += 1
        print("FAIL %s: %r" % (name, e))
    sys.stdout.flush()


def main():
    global ADDR
    ADDR = sys.argv[1]
    W, R, SIZE = sys.argv[2], sys.argv[3], int(sys.argv[4])

    if len(sys.argv) > 6 and sys.argv[5] == "--max-connections":
        maxconn = int(sys.argv[6])

        def max_connections():
            conns = []
            for _ in range(maxconn):
                s = connect()
                struct.unpack(">QQH", recv_exact(s, 18))
                conns.append(s)
            extra = connect()
            expect_closed(extra, "connection beyond the limit")
            conns.pop().close()
            time.sleep(0.5)
            s, size, _ = open_export(W)
            assert size == SIZE
            s.close()
            for c in conns:
                c.close()
        case(max_connections)
        return 1 if failures else 0

    # ---- handshake ----
    def unknown_client_flags():
        s = connect()
        greet(s, cflags=0x80000003)
        expect_closed(s, "unknown client flags")
    case(unknown_client_flags)

    def bad_option_magic():
        s = connect()
        greet(s)
        s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_LIST, 0))
        expect_closed(s, "bad option magic")
    case(bad_option_magic)

    def unknown_option_then_list():
        s = connect()
        greet(s)
        send_opt(s, 4242, b"x" * 100)
        opt, rtype, _ = recv_rep(s)
        assert opt == 4242 and rtype == ERR_UNSUP, "unknown option: %#x" % rtype
        send_opt(s, OPT_STARTTLS)
        assert final_rep(s)[0] & 2**31, "STARTTLS accepted"
        send_opt(s, OPT_LIST)
        rtype, reps = final_rep(s)
        names = sorted(d[4:4 + struct.unpack(">I", d[:4])[0]].decode() for _, d in reps)
        assert rtype == REP_ACK and W in names and R in names, "LIST: %r" % names
        send_opt(s, OPT_ABORT)
        assert recv_rep(s)[1] == REP_ACK
        expect_closed(s, "after ABORT")
    case(unknown_option_then_list)

    def oversized_option():
        for length in (0xFFFFFFFF, 1 << 20):
            s = connect()
            greet(s)
            s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, length) + b"\0" * 1000)
            expect_closed(s, "option of %d bytes" % length)
    case(oversized_option)

    def malformed_options():
        s = connect()
        greet(s)
        # name length beyond the data
        send_opt(s, OPT_GO, struct.pack(">I", 1000) + b"abc" + struct.pack(">H", 0))
        assert final_rep(s)[0] == ERR_INVALID
        # info count disagreeing with the length
        send_opt(s, OPT_INFO, go_data(W)[:-2] + struct.pack(">H", 5))
        assert final_rep(s)[0] == ERR_INVALID
        # NUL in the name
        send_opt(s, OPT_INFO, go_data("a\0b"))
        assert final_rep(s)[0] == ERR_INVALID
        send_opt(s, OPT_INFO, go_data("no-such-export"))
        assert final_rep(s)[0] == ERR_UNKNOWN
        send_opt(s, OPT_LIST, b"junk")
        assert final_rep(s)[0] == ERR_INVALID
        send_opt(s, OPT_STRUCTURED, b"junk")
        assert final_rep(s)[0] == ERR_INVALID
        send_opt(s, OPT_SET_META, meta_data(W, [b"base:allocation"]))
        assert final_rep(s)[0] == ERR_INVALID, "SET_META before STRUCTURED accepted"
        send_opt(s, OPT_STRUCTURED)
        assert final_rep(s)[0] == REP_ACK
        send_opt(s, OPT_STRUCTURED)
        assert final_rep(s)[0] == ERR_INVALID, "second STRUCTURED accepted"
        send_opt(s, OPT_SET_META, meta_data(W, [b"base:allocation"])[:-3])
        assert final_rep(s)[0] == ERR_INVALID, "truncated query accepted"
        bad = struct.pack(">I", len(W)) + W.encode() + struct.pack(">I", 0xFFFFFFFF)
        send_opt(s, OPT_SET_META, bad)
        assert final_rep(s)[0] == ERR_INVALID, "huge query count accepted"
        send_opt(s, OPT_LIST_META, meta_data(W, []))
        rtype, reps = final_rep(s)
        assert rtype == REP_ACK and reps and b"base:allocation" in reps[0][1]
        send_opt(s, OPT_SET_META, meta_data(W, [b"qemu:dirty-bitmap:x", b"nope:"]))
        rtype, reps = final_rep(s)
        assert rtype == REP_ACK and not reps, "unknown contexts selected"
        # INFO on the read-only export: flags and requested name
        send_opt(s, OPT_INFO, go_data(R, [1, 3]))
        rtype, reps = final_rep(s)
        assert rtype == REP_ACK
        infos = {struct.unpack(">H", d[:2])[0]: d for _, d in reps}
        assert 0 in infos and 1 in infos and 3 in infos, "infos: %r" % list(infos)
        _, size, flags = struct.unpack(">HQH", infos[0])
        assert flags & FLAG_READ_ONLY and not flags & FLAG_SEND_TRIM, "ro flags %#x" % flags
        assert infos[1][2:] == R.encode()
        _, mn, pref, mx = struct.unpack(">HIII", infos[3])
        assert (mn, pref, mx) == (1, 4096, 32 << 20), "block sizes %r" % ((mn, pref, mx),)
        # after all that, GO still works
        send_opt(s, OPT_GO, go_data(W))
        assert final_rep(s)[0] == REP_ACK
        ck = request(s, CMD_READ, 0, 4096)
        ck2, err, chunks = any_reply(s)
        assert ck2 == ck and err == 0 and chunks[0][0] == T_DATA
        # BLOCK_STATUS was not negotiated for this export (the last SET selected none)
        ck = request(s, CMD_BLOCK_STATUS, 0, 4096)
        ck2, err, _ = any_reply(s)
        assert ck2 == ck and err == EINVAL, "BLOCK_STATUS without context: %d" % err
        s.close()
    case(malformed_options)

    def disconnect_mid_option():
        s = connect()
        greet(s)
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 500) + b"\0" * 100)
        s.close()
        s = connect()
        greet(s)
        s.sendall(struct.pack(">QI", IHAVEOPT, OPT_GO))
        s.close()
    case(disconnect_mid_option)

    def export_name_unknown():
        s = connect()
        greet(s)
        send_opt(s, OPT_EXPORT_NAME, b"no-such-export")
        expect_closed(s, "EXPORT_NAME of an unknown export")
        s = connect()
        greet(s, cflags=1)  # no NO_ZEROES: expect 124 zero bytes
        send_opt(s, OPT_EXPORT_NAME, W.encode())
        size, flags = struct.unpack(">QH", recv_exact(s, 10))
        assert size == SIZE and recv_exact(s, 124) == b"\0" * 124
        ck = request(s, CMD_READ, 0, 512)
        assert simple_reply(s, ck, 512)[0] == 0
        request(s, CMD_DISC)
        expect_closed(s, "after DISC")
    case(export_name_unknown)

    def garbage():
        rnd = random.Random(1234)
        for i in range(20):
            s = connect()
            if i % 2:
                recv_exact(s, 18)
            try:
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 3000))))
            except (BrokenPipeError, ConnectionResetError):
                pass
            s.close()
        # garbage in the transmission phase
        s, _, _ = open_export(W)
        s.sendall(os.urandom(5000))
        expect_closed(s, "garbage request")
    case(garbage)

    # ---- transmission ----
    def bad_commands():
        s, size, _ = open_export(W)
        assert size == SIZE

        def check(cmd, off, length, flags, want, payload=b""):
            ck = request(s, cmd, off, length, flags, payload=payload)
            ck2, err, _ = any_reply(s)
            assert ck2 == ck, "cookie"
            assert err == want, "cmd %d off %d len %d flags %#x: error %d, want %d" % (
                cmd, off, length, flags, err, want)
        check(99, 0, 0, 0, EINVAL)                          # unknown command
        check(CMD_READ, 0, 4096, 1 << 15, EINVAL)           # unknown flag
        check(CMD_WRITE, 0, 16, F_DF, EINVAL, b"x" * 16)    # flag not for WRITE
        check(CMD_READ, SIZE, 1, 0, EINVAL)                 # past the end
        check(CMD_READ, 2**64 - 512, 4096, 0, EINVAL)       # offset + length overflows
        check(CMD_READ, 0, (32 << 20) + 1, 0, EINVAL)       # longer than the maximum
        check(CMD_WRITE, SIZE - 100, 200, 0, ENOSPC, b"y" * 200)
        check(CMD_WRITE_ZEROES, SIZE, 4096, 0, ENOSPC)
        check(CMD_TRIM, SIZE - 4096, 8192, 0, EINVAL)
        check(CMD_BLOCK_STATUS, 0, 0, 0, EINVAL)            # zero length
        check(CMD_BLOCK_STATUS, SIZE, 4096, 0, EINVAL)
        check(CMD_CACHE, 0, 4096, 0, 0)
        check(CMD_WRITE, 0, 0, 0, 0)
        check(CMD_FLUSH, 0, 0, 0, 0)
        # FAST_ZERO may be refused with ENOTSUP, never anything else
        ck = request(s, CMD_WRITE_ZEROES, 0, 65536, F_FAST_ZERO)
        ck2, err, _ = any_reply(s)
        assert ck2 == ck and err in (0, ENOTSUP), "FAST_ZERO: %d" % err
        # still in sync: a write and a read-back
        data = os.urandom(8192)
        check(CMD_WRITE, 12288, len(data), F_FUA, 0, data)
        ck = request(s, CMD_READ, 12288, 8192, F_DF)
        ck2, err, chunks = any_reply(s)
        assert err == 0 and len(chunks) == 1 and chunks[0][1][8:] == data, "read back"
        # a WRITE longer than the maximum: EINVAL, then the server hangs up
        ck = request(s, CMD_WRITE, 0, (32 << 20) + 4096)
        ck2, err, _ = any_reply(s)
        assert ck2 == ck and err == EINVAL
        expect_closed(s, "oversized WRITE")
    case(bad_commands)

    def simple_replies():
        s, _, _ = open_export(W, structured=False)
        ck = request(s, CMD_READ, 0, 4096, F_DF)
        assert simple_reply(s, ck)[0] == EINVAL, "DF without structured replies"
        ck = request(s, CMD_BLOCK_STATUS, 0, 4096)
        assert simple_reply(s, ck)[0] == EINVAL
        ck = request(s, CMD_READ, SIZE - 4096, 4096)
        assert simple_reply(s, ck, 4096)[0] == 0
        s.close()
    case(simple_replies)

    def read_only_export():
        s, _, flags = open_export(R)
        assert flags & FLAG_READ_ONLY
        for cmd, payload in ((CMD_WRITE, b"z" * 4096), (CMD_TRIM, b""),
                             (CMD_WRITE_ZEROES, b"")):
            ck = request(s, cmd, 0, 4096, payload=payload)
            ck2, err, _ = any_reply(s)
            assert ck2 == ck and err == EPERM, "cmd %d on read-only: %d" % (cmd, err)
        ck = request(s, CMD_FLUSH)
        assert any_reply(s)[1] == 0
        ck = request(s, CMD_READ, 0, 4096)
        assert any_reply(s)[1] == 0
        s.close()
    case(read_only_export)

    def zero_length_read():
        # a READ of 0 bytes is valid: one NONE chunk that ends the reply, plain or DF
        # (found by fuzz-nbd: the server used to compute NULL + 0 for it)
        s, _, _ = open_export(W)
        for flags in (0, F_DF):
            ck = request(s, CMD_READ, 4096, 0, flags)
            ck2, err, chunks = any_reply(s)
            assert ck2 == ck and err == 0, "zero-length READ (flags %d): error %d" % (flags, err)
            assert chunks == [(T_NONE, b"")], "zero-length READ: chunks %r" % chunks
        ck = request(s, CMD_READ, 0, 4096)
        assert any_reply(s)[1] == 0, "still in sync"
        s.close()
    case(zero_length_read)

    def bad_request_magic():
        s, _, _ = open_export(W)
        s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 4096))
        expect_closed(s, "bad request magic")
    case(bad_request_magic)

    def disconnect_mid_payload():
        for n in range(5):
            s, _, _ = open_export(W)
            s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 7, 0, 1 << 20))
            s.sendall(b"p" * (1000 * (n + 1)))
            s.close()
        # a header cut in half
        s, _, _ = open_export(W)
        s.sendall(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_READ, 9))
        s.close()
        # many reads in flight, then vanish without reading the replies
        s, _, _ = open_export(W)
        for i in range(64):
            request(s, CMD_READ, 0, 1 << 20, cookie=i)
        s.close()
    case(disconnect_mid_payload)

    def pipelined():
        s, _, _ = open_export(W)
        blob = os.urandom(1 << 16)
        cookies = set()
        for i in range(16):
            cookies.add(request(s, CMD_WRITE, (1 << 20) + i * 65536, 65536,
                                payload=blob, cookie=1000 + i))
        for i in range(48):
            cookies.add(request(s, CMD_READ, (1 << 20) + (i % 16) * 65536, 65536,
                                cookie=2000 + i))
        got = set()
        for _ in range(64):
            ck, err, chunks = any_reply(s)
            assert err == 0, "pipelined error %d" % err
            got.add(ck)
        assert got == cookies, "replies do not match requests"
        s.close()
    case(pipelined)

    def sparse_read_and_status():
        s, _, _ = open_export(W)
        hole_off = SIZE - (4 << 20)      # the tail of the disk is never written here
        ck = request(s, CMD_TRIM, hole_off, 4 << 20)
        assert any_reply(s)[1] == 0
        data = os.urandom(65536)
        request(s, CMD_WRITE, hole_off + (1 << 20), 65536, payload=data)
        assert any_reply(s)[1] == 0
        ck = request(s, CMD_READ, hole_off, 3 << 20)
        ck2, err, chunks = any_reply(s)
        assert err == 0
        kinds = [c[0] for c in chunks]
        assert kinds == [T_HOLE, T_DATA, T_HOLE], "chunks %r" % kinds
        assert struct.unpack(">QI", chunks[0][1]) == (hole_off, 1 << 20)
        assert chunks[1][1][:8] == struct.pack(">Q", hole_off + (1 << 20))
        assert chunks[1][1][8:] == data
        ck = request(s, CMD_READ, hole_off, 3 << 20, F_DF)
        _, err, chunks = any_reply(s)
        assert err == 0 and len(chunks) == 1 and chunks[0][0] == T_DATA
        assert chunks[0][1][8 + (1 << 20):8 + (1 << 20) + 65536] == data
        ck = request(s, CMD_BLOCK_STATUS, hole_off, 3 << 20)
        _, err, chunks = any_reply(s)
        assert err == 0 and chunks[0][0] == T_BS
        p = chunks[0][1]
        ext = [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]
        assert ext == [(1 << 20, 3), (65536, 0), ((2 << 20) - 65536, 3)], "extents %r" % ext
        ck = request(s, CMD_BLOCK_STATUS, hole_off, 3 << 20, F_REQ_ONE)
        _, err, chunks = any_reply(s)
        assert err == 0 and len(chunks[0][1]) == 12, "REQ_ONE gave several extents"
        s.close()
    case(sparse_read_and_status)

    def disc_finishes_inflight():
        s, _, _ = open_export(W)
        data = os.urandom(1 << 20)
        request(s, CMD_WRITE, 2 << 20, 1 << 20, payload=data, cookie=77)
        request(s, CMD_DISC)
        try:
            ck, err, _ = any_reply(s)
            assert ck == 77 and err == 0
        except Closed:
            pass  # the reply may be dropped, the write may not
        expect_closed(s, "after DISC")
        s, _, _ = open_export(W)
        request(s, CMD_READ, 2 << 20, 1 << 20, F_DF, cookie=78)
        _, err, chunks = any_reply(s)
        assert err == 0 and chunks[0][1][8:] == data, "write before DISC lost"
        s.close()
    case(disc_finishes_inflight)

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
