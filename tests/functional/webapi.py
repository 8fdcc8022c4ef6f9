"""webapi.py — a small client of vma-web's JSON API for the web-*.sh tests (urllib only)."""
import json
import time
import urllib.error
import urllib.request


class Api:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def raw(self, method, path, body=None, token=None, headers=None, data=None):
        """(status, parsed JSON or None, headers) of one request; never raises on 4xx/5xx."""
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok is not False:
            h["Authorization"] = "Bearer " + tok
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                status, hdrs = r.status, r.headers
        except urllib.error.HTTPError as e:
            text, status, hdrs = e.read(), e.code, e.headers
        try:
            return status, json.loads(text) if text else None, hdrs
        except ValueError:
            return status, text, hdrs

    def call(self, method, path, body=None, want=(200, 202)):
        status, data, _ = self.raw(method, path, body)
        assert status in want, "%s %s: %d %r" % (method, path, status, data)
        return data

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body=None):
        return self.call("POST", path, {} if body is None else body)

    def wait_task(self, task, timeout=120, on_poll=None):
        deadline = time.monotonic() + timeout
        while True:
            t = self.get("/api/v1/tasks/" + task)
            if on_poll:
                on_poll(t)
            if t["status"] != "running":
                return t
            assert time.monotonic() < deadline, "task %s still running: %r" % (task, t)
            time.sleep(0.05)

    def backups(self, vm):
        return self.get("/api/v1/vms/%s/backups" % vm)
