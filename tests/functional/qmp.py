"""qmp.py — a small QMP client for vmad's functional tests (python3 standard library only).

    from qmp import QMP
    q = QMP(path)                   # connects, reads the greeting into q.greeting
    q.negotiate()                   # qmp_capabilities, asserts {"return": {}}
    r = q.cmd("query-block")        # the whole response object ({"return": ...} or {"error": ...})
    q.ok("blockdev-add", {...})     # the "return" value; raises QMPError on an error reply
    q.cmd("getfd", {"fdname": "x"}, fds=[fd])   # the descriptor goes along as SCM_RIGHTS
    q.send_raw(b"...")              # arbitrary bytes; then q.recv() reads one message
    q.event("SHUTDOWN")             # waits for an event (events seen earlier are kept)

Every message the server sends must be one JSON object terminated by CRLF; anything else
raises ProtocolError. Events that arrive while waiting for a reply are stored in q.events.
"""

import json
import os
import socket
import time


NO_ID = object()   # cmd() without an "id" member (None sends "id": null)


class ProtocolError(Exception):
    pass


class QMPError(Exception):
    def __init__(self, response):
        self.response = response
        err = response.get("error", {})
        super().__init__("%s: %s" % (err.get("class"), err.get("desc")))


class QMP:
    def __init__(self, path, timeout=10.0, read_greeting=True):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""
        self.events = []
        self.greeting = self.recv() if read_greeting else None

    # ---- raw I/O ----

    def send_raw(self, data, fds=()):
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds))
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)

    def send(self, obj, fds=()):
        self.send_raw(json.dumps(obj).encode(), fds)

    def recv_line(self, timeout=None):
        """One CRLF-terminated line (without the CRLF), or None on EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete message from the server; have %r" % self.buf[:200])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                if self.buf:
                    raise ProtocolError("connection closed inside a message: %r" % self.buf[:200])
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def recv(self, timeout=None):
        """The next message (event or response) as a dict; None on EOF."""
        line = self.recv_line(timeout)
        if line is None:
            return None
        if b"\n" in line or b"\r" in line:
            raise ProtocolError("bare CR or LF inside a message: %r" % line[:200])
        try:
            line.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("non-ASCII output: %r" % line[:200])
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise ProtocolError("not a JSON object: %r" % line[:200])
        return msg

    def response(self, timeout=None):
        """The next message that is not an event (events go to self.events)."""
        while True:
            msg = self.recv(timeout)
            if msg is None:
                raise ProtocolError("connection closed while waiting for a response")
            if "event" in msg:
                self.check_event(msg)
                self.events.append(msg)
                continue
            return msg

    # ---- commands ----

    def cmd(self, name, args=None, id=NO_ID, fds=()):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        if id is not NO_ID:
            req["id"] = id
        self.send(req, fds)
        return self.response()

    def ok(self, name, args=None, **kw):
        r = self.cmd(name, args, **kw)
        if "error" in r:
            raise QMPError(r)
        if "return" not in r:
            raise ProtocolError("neither return nor error: %r" % r)
        return r["return"]

    def negotiate(self):
        r = self.cmd("qmp_capabilities")
        if r != {"return": {}}:
            raise ProtocolError("qmp_capabilities: %r" % r)

    # ---- events ----

    @staticmethod
    def check_event(msg):
        ts = msg.get("timestamp")
        if not (isinstance(ts, dict) and isinstance(ts.get("seconds"), int)
                and isinstance(ts.get("microseconds"), int)
                and 0 <= ts["microseconds"] < 1000000):
            raise ProtocolError("bad event timestamp: %r" % msg)
        if not isinstance(msg["event"], str):
            raise ProtocolError("bad event name: %r" % msg)

    def event(self, name, timeout=None):
        for i, ev in enumerate(self.events):
            if ev["event"] == name:
                return self.events.pop(i)
        while True:
            msg = self.recv(timeout)
            if msg is None:
                raise ProtocolError("connection closed while waiting for event %s" % name)
            if "event" not in msg:
                raise ProtocolError("unexpected response while waiting for %s: %r" % (name, msg))
            self.check_event(msg)
            if msg["event"] == name:
                return msg
            self.events.append(msg)

    def close(self):
        self.sock.close()


def expect_error(r, cls, desc=None):
    """Assert r is an error response of class cls (and, if given, exactly desc)."""
    assert "error" in r, "expected an error, got %r" % r
    assert r["error"]["class"] == cls, "expected class %s, got %r" % (cls, r)
    if desc is not None:
        assert r["error"]["desc"] == desc, "expected desc %r, got %r" % (desc, r["error"]["desc"])
    return r
