"""nbdmeta.py — a minimal NBD client for the meta context tests (python3 standard library
only): the fixed newstyle handshake, structured replies, LIST/SET_META_CONTEXT, GO and
BLOCK_STATUS, each reply checked against the protocol as it is parsed.

    c = NbdClient(socket_path)
    c.structured()
    c.list_meta("pull", [])                  # [context name, ...] (ids must be 0)
    ids = c.set_meta("pull", ["base:allocation", "qemu:dirty-bitmap:b"])  # {name: id}
    c.go("pull")
    chunks = c.block_status(0, 1 << 20)      # [(id, [(length, flags), ...]), ...] in order
    c.close()
"""

import socket
import struct

NBD_OPT_LIST_META_CONTEXT = 9
NBD_OPT_SET_META_CONTEXT = 10
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8
NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_REP_META_CONTEXT = 4
NBD_CMD_DISC = 2
NBD_CMD_BLOCK_STATUS = 7
NBD_CMD_FLAG_REQ_ONE = 1 << 3
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = 32769
REPLY_FLAG_DONE = 1


class NbdError(Exception):
    pass


class NbdClient:
    def __init__(self, path, timeout=20.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        magic, opts, flags = struct.unpack(">QQH", self._recv(18))
        assert magic == 0x4e42444d41474943 and opts == 0x49484156454f5054, "greeting"
        self.s.sendall(struct.pack(">I", 3))   # FIXED_NEWSTYLE | NO_ZEROES
        self.cookie = 0

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            d = self.s.recv(n - len(buf))
            if not d:
                raise NbdError("server hung up")
            buf += d
        return buf

    def _opt(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", 0x49484156454f5054, opt, len(data)) + data)

    def _replies(self, opt):
        """Option replies up to the final one: [(type, data)]; raises on an error reply."""
        out = []
        while True:
            magic, o, typ, ln = struct.unpack(">QIII", self._recv(20))
            assert magic == 0x3e889045565a9 and o == opt, (hex(magic), o, opt)
            data = self._recv(ln)
            if typ & (1 << 31):
                raise NbdError("option %d: error 0x%x: %r" % (opt, typ, data))
            out.append((typ, data))
            if typ == NBD_REP_ACK:
                return out

    def structured(self):
        self._opt(NBD_OPT_STRUCTURED_REPLY)
        self._replies(NBD_OPT_STRUCTURED_REPLY)

    @staticmethod
    def _meta_data(export, queries):
        e = export.encode()
        d = struct.pack(">I", len(e)) + e + struct.pack(">I", len(queries))
        for q in queries:
            qb = q.encode()
            d += struct.pack(">I", len(qb)) + qb
        return d

    def _meta(self, opt, export, queries):
        self._opt(opt, self._meta_data(export, queries))
        out = []
        for typ, data in self._replies(opt):
            if typ == NBD_REP_META_CONTEXT:
                (cid,) = struct.unpack(">I", data[:4])
                out.append((data[4:].decode(), cid))
        return out

    def list_meta(self, export, queries):
        got = self._meta(NBD_OPT_LIST_META_CONTEXT, export, queries)
        assert all(cid == 0 for _, cid in got), got
        return [n for n, _ in got]

    def set_meta(self, export, queries):
        got = self._meta(NBD_OPT_SET_META_CONTEXT, export, queries)
        ids = dict(got)
        assert len(ids) == len(got), "a context twice: %r" % got
        assert len(set(ids.values())) == len(ids), "an id twice: %r" % got
        return ids

    def go(self, export):
        e = export.encode()
        self._opt(NBD_OPT_GO, struct.pack(">I", len(e)) + e + struct.pack(">H", 0))
        for typ, data in self._replies(NBD_OPT_GO):
            if typ == NBD_REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                self.size = struct.unpack(">Q", data[2:10])[0]

    def block_status(self, offset, length, flags=0):
        """[(context id, [(length, flags), ...])] in the order sent; raises NbdError with
        the error value on an error chunk."""
        self.cookie += 1
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, NBD_CMD_BLOCK_STATUS,
                                   self.cookie, offset, length))
        chunks = []
        while True:
            magic, cflags, typ, cookie, ln = struct.unpack(">IHHQI", self._recv(20))
            assert magic == 0x668e33ef, "structured reply magic %x" % magic
            assert cookie == self.cookie, (cookie, self.cookie)
            data = self._recv(ln)
            if typ == REPLY_TYPE_ERROR:
                (err,) = struct.unpack(">I", data[:4])
                assert cflags & REPLY_FLAG_DONE
                raise NbdError(err)
            assert typ == REPLY_TYPE_BLOCK_STATUS, typ
            assert ln >= 12 and (ln - 4) % 8 == 0, ln
            (cid,) = struct.unpack(">I", data[:4])
            ext = [struct.unpack(">II", data[i:i + 8]) for i in range(4, ln, 8)]
            chunks.append((cid, ext))
            if cflags & REPLY_FLAG_DONE:
                return chunks

    def close(self):
        try:
            self.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, NBD_CMD_DISC, 0, 0, 0))
        except OSError:
            pass
        self.s.close()
