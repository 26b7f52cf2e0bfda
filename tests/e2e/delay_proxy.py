"""A fault-injecting HTTP reverse proxy for e2e tests (python3 stdlib only).

It sits between a child Outpost and its parent, forwards every request to
the parent and answers with the parent's answer, except where a rule says
otherwise. Bodies are streamed both ways (64 KiB at a time, chunked framing
kept), never buffered whole, so a multi-GB upload goes through in constant
memory.

Rules, first match wins (each a dict):

    {"method": "PUT",                 # exact method, or a list of them; absent: any
     "path": r"/manifests/v1$",       # regex, re.search on the path (no query); absent: any
     "delay": 6,                      # seconds to hold the request before forwarding it
     "status": 403,                   # answer this instead of forwarding (body drained)
     "body": '{"errors": [...]}',     #   ... with this body (default: an OCI DENIED error)
     "headers": {"WWW-Authenticate": "..."},   # ... and these extra headers
     "rate": 1048576,                 # pace the request body at this many bytes/s
     "count": 1}                      # applies to the first `count` matches; absent: always

A delay is the fault itself (a slow link), never a way for a test to wait:
tests wait on what the proxy has seen (`requests()`, `in_flight()`).

    with DelayProxy(parent.port) as px:
        px.set_rules([{"method": "PUT", "path": r"/manifests/v1$", "delay": 6, "count": 1}])
        ... wait_until(lambda: px.in_flight("PUT", r"/manifests/v1$")) ...

Rules are set from the test process (`set_rules`, `add_rule`; counters
restart with `set_rules`) or, for a proxy run on its own, from a JSON file
re-read whenever it changes:

    python3 delay_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT RULES.json
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from faulty_upstream import _Base

CHUNK = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "upgrade"}
DENIED = json.dumps({"errors": [{"code": "DENIED", "message": "refused by the e2e delay proxy"}]})


@dataclass
class Seen:
    """One request the proxy received."""
    n: int
    method: str
    path: str                   # without the query
    target: str                 # as sent (path and query)
    rule: dict | None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None   # when its answer was sent in full (None: in flight)
    status: int | None = None       # what the client was answered
    body_bytes: int = 0             # request body bytes forwarded or drained so far


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "delay-proxy/1"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    # -- request bodies, streamed
    def _body_pieces(self, seen: Seen, rate: float | None):
        """Yields the raw request body as it arrives: (bytes to forward).
        Chunked bodies are yielded with their framing (forwarded as is)."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("client closed inside a chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    trailer = b""
                    while True:
                        t = self.rfile.readline(1024)
                        trailer += t
                        if t in (b"\r\n", b"\n", b""):
                            break
                    yield line + trailer
                    return
                yield line
                left = size
                while left:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        raise ConnectionError("client closed inside a chunk")
                    left -= len(data)
                    self._paced(seen, len(data), rate)
                    yield data
                yield self.rfile.read(2)
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            data = self.rfile.read(min(CHUNK, n))
            if not data:
                raise ConnectionError(f"client closed with {n} body bytes to come")
            n -= len(data)
            self._paced(seen, len(data), rate)
            yield data

    def _paced(self, seen: Seen, n: int, rate: float | None) -> None:
        owner: DelayProxy = self.server.owner  # type: ignore[attr-defined]
        if rate:
            owner.stopping.wait(n / rate)   # pacing of the link, not synchronisation
        with owner.lock:
            seen.body_bytes += n

    # -- answers
    def _send_head(self, status: int, reason: str | None, headers: list[tuple[str, str]]) -> None:
        self.send_response_only(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def _dispatch(self) -> None:
        owner: DelayProxy = self.server.owner  # type: ignore[attr-defined]
        u = urllib.parse.urlsplit(self.path)
        rule = owner._match(self.command, u.path)
        seen = owner._record(self.command, u.path, self.path, rule)
        try:
            self._serve(owner, seen, rule or {})
        except (BrokenPipeError, ConnectionResetError, ConnectionError, OSError):
            self.close_connection = True
        finally:
            with owner.lock:
                seen.finished = time.monotonic()

    def _serve(self, owner: "DelayProxy", seen: Seen, rule: dict) -> None:
        if rule.get("delay"):
            owner.stopping.wait(float(rule["delay"]))   # the fault: a slow link
        rate = rule.get("rate")
        if rule.get("status"):
            for _ in self._body_pieces(seen, rate):
                pass
            body = (rule.get("body") if rule.get("body") is not None else DENIED).encode()
            hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                    ("Docker-Distribution-API-Version", "registry/2.0")]
            hdrs += list((rule.get("headers") or {}).items())
            self._send_head(int(rule["status"]), None, hdrs)
            with owner.lock:
                seen.status = int(rule["status"])
            if self.command != "HEAD":
                self.wfile.write(body)
            return

        up = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=owner.timeout)
        try:
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() != "expect":
                    up.putheader(k, v)   # Host kept: Location headers then name the proxy
            up.endheaders()
            for piece in self._body_pieces(seen, rate):
                up.send(piece)
            resp = up.getresponse()
            hdrs = [(k, v) for k, v in resp.getheaders()
                    if k.lower() not in HOP_BY_HOP and k.lower() != "transfer-encoding"]
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            chunked = bool(resp.chunked) and not no_body
            close_delimited = not no_body and not chunked and resp.getheader("Content-Length") is None
            if chunked:
                hdrs.append(("Transfer-Encoding", "chunked"))
            if close_delimited:
                self.close_connection = True
            self._send_head(resp.status, resp.reason, hdrs)
            with owner.lock:
                seen.status = resp.status
            if no_body:
                return
            while True:
                data = resp.read(CHUNK) if not chunked else resp.read1(CHUNK)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException) as e:
            if seen.status is None:   # nothing sent yet: a gateway error
                body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": f"proxy: {e!r}"}]}).encode()
                self._send_head(502, "Bad Gateway", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body)))])
                with owner.lock:
                    seen.status = 502
                self.wfile.write(body)
            self.close_connection = True
        finally:
            up.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class DelayProxy(_Base):
    """The proxy, in a thread of the test process, on 127.0.0.1:<port>
    (0: a free port), forwarding to upstream_host:upstream_port."""

    handler_class = _Handler

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0,
                 rules: list[dict] | None = None, rules_file: str | None = None, timeout: float = 120.0):
        super().__init__(port)
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.timeout = timeout
        self.stopping = threading.Event()
        self.rules: list[dict] = list(rules or [])
        self.used: list[int] = [0] * len(self.rules)
        self.rules_file = rules_file
        self._rules_mtime: float | None = None

    def stop(self) -> None:
        self.stopping.set()   # ends delays and pacing at once
        super().stop()
        if self.thread is not None:
            self.thread.join(5)

    # -- rules
    def set_rules(self, rules: list[dict]) -> None:
        """Replaces the rules; their counts start again."""
        with self.lock:
            self.rules = [dict(r) for r in rules]
            self.used = [0] * len(self.rules)

    def add_rule(self, rule: dict) -> None:
        with self.lock:
            self.rules.append(dict(rule))
            self.used.append(0)

    def _reload_file(self) -> None:
        if not self.rules_file:
            return
        try:
            mtime = os.stat(self.rules_file).st_mtime_ns
            if mtime == self._rules_mtime:
                return
            with open(self.rules_file) as f:
                rules = json.load(f)
        except (OSError, ValueError):
            return
        self._rules_mtime = mtime
        self.set_rules(rules)

    def _match(self, method: str, path: str) -> dict | None:
        self._reload_file()
        with self.lock:
            for i, r in enumerate(self.rules):
                m = r.get("method")
                if m and method not in ([m] if isinstance(m, str) else m):
                    continue
                if r.get("path") and not re.search(r["path"], path):
                    continue
                if r.get("count") is not None and self.used[i] >= int(r["count"]):
                    continue
                self.used[i] += 1
                return dict(r)
        return None

    # -- what was seen
    def _record(self, method: str, path: str, target: str, rule: dict | None) -> Seen:
        with self.lock:
            s = Seen(len(self.seen), method, path, target, rule)
            self.seen.append(s)
            return s

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """Requests received so far (in arrival order), optionally filtered by
        method and a path regex (re.search)."""
        with self.lock:
            out = list(self.seen)
        if method:
            out = [s for s in out if s.method == method]
        if path:
            rx = re.compile(path)
            out = [s for s in out if rx.search(s.path)]
        return out

    def in_flight(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """Requests received whose answer has not been sent in full yet."""
        return [s for s in self.requests(method, path) if s.finished is None]


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    host, _, port = sys.argv[2].rpartition(":")
    px = DelayProxy(int(port), host or "127.0.0.1", port=int(sys.argv[1]), rules_file=sys.argv[3]).start()
    print(f"delay proxy on {px.url} -> {sys.argv[2]}, rules from {sys.argv[3]}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        px.stop()
