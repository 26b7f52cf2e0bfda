"""Purpose-built upstream servers for pull-through e2e tests (python3 stdlib).

A real registry cannot be told to lie, to hang up halfway through a blob or
to send its blobs to another host; these can. Each runs in a thread of the
test process on 127.0.0.1:<free port>, speaks HTTP/1.1 with keep-alive, and
records every request it sees (method, path, query, headers) so tests can
assert what Outpost sent.

  FakeRegistry   just enough of the distribution API: GET /v2/, GET/HEAD
                 manifests (by tag or digest) and blobs, optional Basic or
                 Bearer auth, and per-blob faults:
                   "corrupt"   right length, one byte wrong
                   "truncate"  full Content-Length, half the body, then close
                   "redirect"  307 to a StorageServer (signed-looking URL)
                   "missing"   404 BLOB_UNKNOWN
                   "error500"  500 with an error body
                   "ratelimit" 429 TOOMANYREQUESTS with Retry-After: 11
                   "chunked"   the right bytes, Transfer-Encoding: chunked
                   "chunked-corrupt" / "chunked-truncate"  the same faults,
                               chunked (no Content-Length to check against)
                 and per-manifest fault "corrupt" (bytes differ from the
                 Docker-Content-Digest it claims). gates[digest] = Event():
                 a blob GET sends its head and first half, then waits for
                 the event before the rest; a manifest GET waits before
                 answering (deterministic "in flight" windows).
  StorageServer  a "blob storage" host: GET /storage/<digest>?sig=... serves
                 bytes, records headers (Authorization must never arrive).
  TokenServer    a token endpoint: GET /token?service=&scope= checks Basic
                 credentials and answers {"token": ..., "expires_in": ...}.

    with FakeRegistry(auth=("basic", "u", "p")) as reg:
        reg.add_layout("repo", layout)
        reg.faults[digest] = "truncate"
        ... reg.count("GET", f"/v2/repo/blobs/{digest}") ...
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    """One request a server received."""
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]          # lower-case names
    peer: tuple = ()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faulty-upstream/1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        owner: _Base = self.server.owner  # type: ignore[attr-defined]
        u = urllib.parse.urlsplit(self.path)
        seen = Seen(self.command, u.path, urllib.parse.parse_qs(u.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()}, self.client_address)
        # drain a request body (none expected, but keep the connection usable)
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with owner.lock:
            owner.seen.append(seen)
        try:
            owner.handle(self, seen)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # -- response helpers
    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str | None = "application/json") -> None:
        self.send_response(status)
        hdrs = dict(headers or {})
        if content_type and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = content_type
        hdrs.setdefault("Content-Length", str(len(body)))
        hdrs.setdefault("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.reply(status, body, headers)

    def hang_up(self) -> None:
        """Closes the connection now (FIN), whatever was promised."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Base:
    """A recording HTTP server in a background thread (handler_class serves
    each request; the server's `owner` is this object)."""

    handler_class: type = _Handler

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.httpd: _Server | None = None
        self.thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = port  # 0: any free port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "_Base":
        self.httpd = _Server((self.host, self.port), self.handler_class)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"{type(self).__name__}:{self.port}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def handle(self, h: _Handler, seen: Seen) -> None:
        raise NotImplementedError

    # -- what was seen
    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """Recorded requests, optionally filtered by method and a path regex (fullmatch)."""
        with self.lock:
            out = list(self.seen)
        if method:
            out = [s for s in out if s.method == method]
        if path:
            rx = re.compile(path)
            out = [s for s in out if rx.fullmatch(s.path)]
        return out

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return len(self.requests(method, path))

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()


class StorageServer(_Base):
    """Serves blob bytes at /storage/<digest> (any query), like a signed-URL
    object store. Never asks for credentials; records what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}

    def handle(self, h: _Handler, seen: Seen) -> None:
        m = re.fullmatch(r"/storage/(sha256:[0-9a-f]{64})", seen.path)
        if seen.method not in ("GET", "HEAD") or not m or m.group(1) not in self.blobs:
            return h.reply(404, b"no such object\n", content_type="text/plain")
        h.reply(200, self.blobs[m.group(1)], content_type="application/octet-stream")


class TokenServer(_Base):
    """A registry token endpoint: Basic credentials in, bearer token out."""

    def __init__(self, username: str, password: str, token: str = "e2e-token-1",
                 expires_in: int = 300, field_name: str = "token") -> None:
        super().__init__()
        self.username, self.password = username, password
        self.token, self.expires_in, self.field_name = token, expires_in, field_name

    @property
    def realm(self) -> str:
        return self.url + "/token"

    def handle(self, h: _Handler, seen: Seen) -> None:
        if seen.path != "/token" or seen.method != "GET":
            return h.reply(404, b"{}")
        want = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if seen.header("Authorization") != want:
            return h.error(401, "UNAUTHORIZED", "bad credentials",
                           {"WWW-Authenticate": 'Basic realm="token"'})
        h.reply(200, json.dumps({self.field_name: self.token, "expires_in": self.expires_in,
                                 "issued_at": "2024-01-01T00:00:00Z"}).encode())


class FakeRegistry(_Base):
    """Enough of a distribution registry to be a parent, with faults.

    auth: None (anonymous), ("basic", user, password) or
          ("bearer", realm, service, token) — the challenge names
          scope="repository:<repo>:pull" and only "Bearer <token>" passes.
    """

    def __init__(self, auth: tuple | None = None, storage: StorageServer | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.auth = auth
        self.storage = storage
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # (repo, digest) -> (type, bytes)
        self.tags: dict[tuple[str, str], str] = {}                       # (repo, tag) -> digest
        self.blobs: dict[str, bytes] = {}                                 # digest -> bytes (any repo)
        self.faults: dict[str, str] = {}                                  # digest -> fault
        self.manifest_faults: dict[str, str] = {}                         # digest -> "corrupt"
        self.gates: dict[str, threading.Event] = {}                       # digest -> release
        self.gate_timeout = 60.0

    # -- content
    def add_manifest(self, repo: str, data: bytes, media_type: str, tag: str | None = None) -> str:
        d = _digest(data)
        self.manifests[(repo, d)] = (media_type, data)
        if tag:
            self.tags[(repo, tag)] = d
        return d

    def add_blob(self, data: bytes) -> str:
        d = _digest(data)
        self.blobs[d] = data
        if self.storage is not None:
            self.storage.blobs[d] = data
        return d

    def add_layout(self, repo: str, layout: Any) -> None:
        """Everything a harness.Layout holds, tagged layout.tag."""
        manifest_digests = {im.manifest_digest for im in layout.images}
        for d, data in layout.blobs.items():
            if d == layout.top_digest or d in manifest_digests:
                continue
            self.add_blob(data)
        for im in layout.images:
            self.add_manifest(repo, im.manifest, "application/vnd.oci.image.manifest.v1+json")
        self.add_manifest(repo, layout.top_bytes, layout.top_media_type, tag=layout.tag)

    # -- auth
    def _authorized(self, h: _Handler, seen: Seen, repo: str | None) -> bool:
        if self.auth is None:
            return True
        got = seen.header("Authorization")
        if self.auth[0] == "basic":
            _, user, pw = self.auth
            if got == "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode():
                return True
            h.error(401, "UNAUTHORIZED", "authentication required",
                    {"WWW-Authenticate": 'Basic realm="faulty-upstream"'})
            return False
        _, realm, service, token = self.auth
        if got == "Bearer " + token:
            return True
        ch = f'Bearer realm="{realm}",service="{service}"'
        if repo:
            ch += f',scope="repository:{repo}:pull"'
        h.error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": ch})
        return False

    # -- routes
    _MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)")
    _BLOB = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")

    def handle(self, h: _Handler, seen: Seen) -> None:
        if seen.method not in ("GET", "HEAD"):
            return h.error(405, "UNSUPPORTED", "read-only test registry")
        if seen.path == "/v2/" or seen.path == "/v2":
            if self._authorized(h, seen, None):
                h.reply(200, b"{}")
            return
        m = self._MANIFEST.fullmatch(seen.path)
        if m:
            repo, ref = m.group("name"), m.group("ref")
            if not self._authorized(h, seen, repo):
                return
            d = self.tags.get((repo, ref), ref)
            got = self.manifests.get((repo, d))
            if got is None:
                return h.error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {ref}")
            media_type, data = got
            gate = self.gates.get(d)
            if gate is not None and seen.method == "GET":
                gate.wait(self.gate_timeout)
            if self.manifest_faults.get(d) == "corrupt":
                data = data.replace(b"schemaVersion", b"schemaversion", 1)  # same length, other hash
            return h.reply(200, data, {"Docker-Content-Digest": d}, content_type=media_type)
        m = self._BLOB.fullmatch(seen.path)
        if m:
            repo, d = m.group("name"), m.group("digest")
            if not self._authorized(h, seen, repo):
                return
            data = self.blobs.get(d)
            fault = self.faults.get(d)
            if data is None or fault == "missing":
                return h.error(404, "BLOB_UNKNOWN", f"blob unknown: {d}")
            hdrs = {"Docker-Content-Digest": d}
            if fault == "redirect":
                if self.storage is None:
                    raise AssertionError("redirect fault without a StorageServer")
                loc = f"{self.storage.url}/storage/{d}?sig=e2e-signed&expires=9999999999"
                return h.reply(307, b"", {"Location": loc}, content_type=None)
            if fault == "error500":
                return h.error(500, "UNKNOWN", "storage backend on fire")
            if fault == "ratelimit":
                return h.error(429, "TOOMANYREQUESTS", "slow down", {"Retry-After": "11"})
            if fault in ("corrupt", "chunked-corrupt"):
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
            if fault == "truncate" and seen.method == "GET":
                h.send_response(200)
                h.send_header("Content-Type", "application/octet-stream")
                h.send_header("Content-Length", str(len(data)))
                h.send_header("Docker-Content-Digest", d)
                h.end_headers()
                h.wfile.write(data[: len(data) // 2])
                return h.hang_up()
            if fault in ("chunked", "chunked-corrupt", "chunked-truncate"):
                h.send_response(200)
                h.send_header("Content-Type", "application/octet-stream")
                h.send_header("Docker-Content-Digest", d)
                if seen.method == "HEAD":
                    h.send_header("Content-Length", str(len(data)))
                    return h.end_headers()
                h.send_header("Transfer-Encoding", "chunked")
                h.end_headers()
                end = len(data) // 2 if fault == "chunked-truncate" else len(data)
                step = 64 * 1024
                gate = self.gates.get(d)
                for off in range(0, end, step):
                    if gate is not None and off >= len(data) // 2 and not gate.is_set():
                        h.wfile.flush()
                        if not gate.wait(self.gate_timeout):
                            return h.hang_up()
                    piece = data[off:min(off + step, end)]
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if fault == "chunked-truncate":
                    return h.hang_up()
                h.wfile.write(b"0\r\n\r\n")
                return
            gate = self.gates.get(d)
            if gate is not None and seen.method == "GET":
                h.send_response(200)
                h.send_header("Content-Type", "application/octet-stream")
                h.send_header("Content-Length", str(len(data)))
                h.send_header("Docker-Content-Digest", d)
                h.end_headers()
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                if not gate.wait(self.gate_timeout):
                    return h.hang_up()
                h.wfile.write(data[len(data) // 2:])
                return
            return h.reply(200, data, hdrs, content_type="application/octet-stream")
        h.error(404, "NOT_FOUND", f"no route for {seen.path}")


if __name__ == "__main__":  # manual poking: python3 faulty_upstream.py
    import time
    with FakeRegistry() as r:
        r.add_blob(b"hello")
        print(f"fake registry on {r.url}; blob {_digest(b'hello')}", flush=True)
        while True:
            time.sleep(3600)
