"""End-to-end test harness for Outpost (python3 standard library only).

Everything here starts real processes on 127.0.0.1 and cleans them up:

  Outpost(...)          an `outpost serve --config` instance with a temp config
  DockerRegistry(...)   Debian's CNCF distribution (`docker-registry serve`)
  make_oci_layout(...)  writes an OCI image layout (single image or multi-arch)
  skopeo(...)           runs skopeo with a timeout
  http(...)             one request through http.client
  RawConn / raw_exchange  raw bytes over a socket (keep-alive, pipelining, junk)
  wait_until(...)       bounded polling; never use bare sleeps to synchronise
  rss_kb / peak_rss_kb  memory of a process from /proc/PID/status

Environment:
  OUTPOST_BIN        path of the outpost binary (set by tests/e2e/meson.build)
  OUTPOST_SANITIZED  "1" when the binary is built with sanitizers; deadlines
                     are then multiplied by OUTPOST_SLOW (default 3)
  OUTPOST_KEEP_TMP   "1" keeps temp dirs (printed to stderr) for debugging
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client as httpclient
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import unittest
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SANITIZED = os.environ.get("OUTPOST_SANITIZED", "") == "1"
SLOW = float(os.environ.get("OUTPOST_SLOW", "3" if SANITIZED else "1"))
KEEP_TMP = os.environ.get("OUTPOST_KEEP_TMP", "") == "1"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_report(text: str, max_lines: int = 150) -> str:
    """The sanitizer report in a process's stderr ('' if none), from its
    first line on, at most max_lines lines. Leak reports are reordered so
    direct leaks (whose stacks name the allocation that matters) come before
    indirect ones."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if any(m in l for m in SANITIZER_MARKERS)), None)
    if start is None:
        return ""
    rep = lines[start:]
    is_leak = lambda l: l.startswith(("Direct leak", "Indirect leak"))  # noqa: E731
    first_leak = next((i for i, l in enumerate(rep) if is_leak(l)), None)
    if first_leak is None:
        return "\n".join(rep[:max_lines])
    direct: list[list[str]] = []
    indirect: list[list[str]] = []
    tail_lines: list[str] = []
    block: list[str] | None = None
    for l in rep[first_leak:]:
        if is_leak(l):
            block = [l]
            (direct if l.startswith("Direct") else indirect).append(block)
        elif l.startswith("SUMMARY:"):
            block = None
            tail_lines.append(l)
        elif block is not None and l.strip():
            block.append(l)
    out = rep[:first_leak] + [l for b in direct + indirect for l in b]
    return "\n".join(out[:max_lines] + tail_lines)


def scaled(seconds: float) -> float:
    """A deadline, stretched for sanitizer builds."""
    return seconds * SLOW


# --------------------------------------------------------------------------
# small utilities

def outpost_bin() -> str:
    """The outpost binary: $OUTPOST_BIN (set by meson), else build/src/outpost."""
    p = os.environ.get("OUTPOST_BIN")
    if p:
        if not os.access(p, os.X_OK):
            raise FileNotFoundError(f"OUTPOST_BIN={p} is not an executable file")
        return os.path.abspath(p)
    for d in ("build", "build-ci", "build-asan"):
        cand = os.path.join(REPO, d, "src", "outpost")
        if os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError("outpost binary not found: set OUTPOST_BIN or build into build/")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessFailed(AssertionError):
    """A process under test died when it should not have: never retried."""


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str | Callable[[], str] = "condition") -> Any:
    """Polls cond() until it returns a truthy value (returned) or the deadline
    passes (AssertionError). OSError, HTTP, assertion, value and lookup errors
    from cond() count as "not yet" (the last one is reported on timeout);
    ProcessFailed and anything else propagate at once. `timeout` is scaled
    for sanitizer builds."""
    deadline = time.monotonic() + scaled(timeout)
    last_exc: BaseException | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except ProcessFailed:
            raise
        except (OSError, httpclient.HTTPException, AssertionError, ValueError, LookupError) as e:
            last_exc = e  # "not yet"; reported on timeout. Other errors are bugs: raised.
        if time.monotonic() >= deadline:
            msg = message() if callable(message) else message
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {scaled(timeout):.1f}s waiting for {msg}{extra}")
        time.sleep(interval)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def read_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    """Resident memory of pid in KiB (VmRSS now, or VmHWM = peak)."""
    v = read_status(pid)[field_name]
    return int(v.split()[0])


def peak_rss_kb(pid: int) -> int:
    return rss_kb(pid, "VmHWM")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line (key=value key="quoted value") as a dict."""
    out: dict[str, str] = {}
    for m in re.finditer(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        k, v = m.group(1), m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = bytes(v[1:-1], "utf-8").decode("unicode_escape")
        out[k] = v
    return out


# --------------------------------------------------------------------------
# HTTP helpers

@dataclass
class Response:
    status: int
    reason: str
    headers: Any          # http.client.HTTPMessage (case-insensitive get/get_all)
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def http(method: str, url: str, headers: Mapping[str, str] | None = None,
         body: bytes | str | Iterable[bytes] | None = None, timeout: float = 10.0,
         chunked: bool = False) -> Response:
    """One request on a fresh connection; redirects are not followed.
    body may be bytes/str, a file object or (with chunked=True) an iterable."""
    u = urllib.parse.urlsplit(url)
    conn_cls = httpclient.HTTPSConnection if u.scheme == "https" else httpclient.HTTPConnection
    conn = conn_cls(u.hostname, u.port, timeout=scaled(timeout))
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    try:
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.headers, data)
    finally:
        conn.close()


def http_get(url: str, **kw) -> Response:
    return http("GET", url, **kw)


class RawConn:
    """A raw TCP connection for keep-alive, pipelining and malformed-input tests.

    rc = RawConn(port); rc.send(b"GET /v2/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    r = rc.read_response()            # one response, body framed by
                                      # Content-Length / chunked / close
    rc.closed_by_peer(timeout=2)      # True once the server closed the socket
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.timeout = scaled(timeout)
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.buf = b""

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes; False on EOF. Raises socket.timeout at deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("raw read deadline")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_until(self, sep: bytes, deadline: float) -> bytes:
        while sep not in self.buf:
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed; got {self.buf[:200]!r}")
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, timeout: float | None = None, head: bool = False) -> "RawResponse":
        """Reads exactly one response. head=True: the request was HEAD (no body)."""
        deadline = time.monotonic() + (scaled(timeout) if timeout is not None else self.timeout)
        raw_head = self._read_until(b"\r\n\r\n", deadline)
        lines = raw_head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers: list[tuple[str, str]] = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k.strip(), v.strip()))
        r = RawResponse(version, int(code), reason, headers, b"", raw_head)
        status = r.status
        if head or status in (204, 304) or 100 <= status < 200:
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if "chunked" in te:
            body = b""
            while True:
                size_line = self._read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until empty line
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                body += self._read_exact(size, deadline)
                self._read_exact(2, deadline)
            r.body = body
        elif cl is not None:
            r.body = self._read_exact(int(cl), deadline)
        else:
            while self._fill(deadline):
                pass
            r.body, self.buf = self.buf, b""
        return r

    def read_all(self, timeout: float = 5.0) -> bytes:
        """Everything until the peer closes (or the deadline: returns what came)."""
        deadline = time.monotonic() + scaled(timeout)
        with contextlib.suppress(socket.timeout, ConnectionResetError):
            while self._fill(deadline):
                pass
        out, self.buf = self.buf, b""
        return out

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the server closes (EOF or reset) within timeout; bytes that
        arrive meanwhile are kept in self.buf."""
        deadline = time.monotonic() + scaled(timeout)
        try:
            while self._fill(deadline):
                pass
            return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends bytes, half-closes nothing, returns everything read until the
    server closes or the deadline passes."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        return c.read_all(timeout)


# --------------------------------------------------------------------------
# config writers (tiny TOML / YAML emitters for the shapes we use)

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(cfg: Mapping[str, Any]) -> str:
    """Top-level scalars, [tables] (one level of nesting plus dotted
    sub-tables) and [[arrays of tables]] (a list of dicts)."""
    out: list[str] = []

    def table(prefix: str, d: Mapping[str, Any], header: str) -> None:
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict)
                   and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))]
        out.append(header)
        for k, v in scalars:
            if v is None:
                continue
            out.append(f"{k} = {_toml_value(v)}")
        out.append("")
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v, f"[{name}]")
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    table(name, item, f"[[{name}]]")

    top = {k: v for k, v in cfg.items() if not isinstance(v, (dict, list)) or
           (isinstance(v, list) and not (v and all(isinstance(x, dict) for x in v)))}
    for k, v in top.items():
        if v is not None:
            out.append(f"{k} = {_toml_value(v)}")
    if top:
        out.append("")
    for k, v in cfg.items():
        if isinstance(v, dict):
            table(k, v, f"[{k}]")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                table(k, item, f"[[{k}]]")
    return "\n".join(out) + "\n"


def to_yaml(v: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(v, dict):
        lines = []
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(x, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(x)}")
        return "\n".join(lines)
    if isinstance(v, list):
        lines = []
        for x in v:
            if isinstance(x, (dict, list)) and x:
                inner = to_yaml(x, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(x)}")
        return "\n".join(lines)
    return pad + _yaml_scalar(v)


def _yaml_scalar(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if x is None:
        return "null"
    if isinstance(x, (int, float)):
        return repr(x)
    if isinstance(x, dict):
        return "{}"
    if isinstance(x, list):
        return "[]"
    return json.dumps(str(x))


def deep_merge(base: dict, over: Mapping[str, Any] | None) -> dict:
    """Merges `over` into a copy of `base`; a None value deletes the key."""
    out = json.loads(json.dumps(base))
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _mktemp(prefix: str) -> str:
    d = tempfile.mkdtemp(prefix=prefix)
    if KEEP_TMP:
        print(f"# keeping {d}", file=sys.stderr)
    return d


# --------------------------------------------------------------------------
# processes

def run_outpost(*args: str, timeout: float = 30.0, cwd: str | None = None,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs a non-serving outpost subcommand (`version`, `config`, ...)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([outpost_bin(), *args], capture_output=True, text=True,
                          timeout=scaled(timeout), cwd=cwd, env=e)


class Outpost:
    """A running `outpost serve --config <temp file>` on 127.0.0.1:<free port>.

        with Outpost(config={"server": {"idle_timeout": "1s"}}) as op:
            r = http("GET", op.url + "/v2/")

    config   : merged over the defaults below; a None value removes a key.
    raw_config: the config file text verbatim (no merging, no port injection
               unless it contains "{port}" / "{root}" placeholders).
    ready    : wait until GET /v2/ answers (any HTTP status) before returning.
    expect_exit: exit status asserted by stop() after SIGTERM (None = don't check).
    Attributes: url, host, port, root (storage dir), tmp, config_path,
    log_path (stderr), proc, pid.
    """

    STARTUP_TIMEOUT = 15.0

    def __init__(self, config: Mapping[str, Any] | None = None, *, raw_config: str | None = None,
                 ready: bool = True, expect_exit: int | None = 0, args: Iterable[str] = (),
                 env: Mapping[str, str] | None = None, root: str | None = None,
                 startup_timeout: float | None = None, stop_timeout: float = 40.0):
        self.tmp = _mktemp("outpost-e2e-")
        self.root = root or os.path.join(self.tmp, "storage")
        self.user_config = config
        self.raw_config = raw_config
        self.wait_ready = ready
        self.expect_exit = expect_exit
        self.extra_args = list(args)
        self.env = env
        self.startup_timeout = startup_timeout or self.STARTUP_TIMEOUT
        self.stop_timeout = stop_timeout
        self.config_path = os.path.join(self.tmp, "outpost.toml")
        self.log_path = os.path.join(self.tmp, "outpost.stderr.log")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.returncode: int | None = None
        self._log_file = None

    # -- config
    def default_config(self) -> dict:
        return {
            "server": {
                "listen": [f"{self.host}:{self.port}"],
                "header_timeout": "5s",
                "idle_timeout": "10s",
                "body_timeout": "10s",
                "write_timeout": "10s",
                "shutdown_timeout": "5s",
            },
            "storage": {"root": self.root},
            "registry": {"name": "e2e"},
            "log": {"level": "debug"},
        }

    def config_text(self) -> str:
        if self.raw_config is not None:
            return self.raw_config.replace("{port}", str(self.port)).replace("{root}", self.root)
        return to_toml(deep_merge(self.default_config(), self.user_config))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- lifecycle
    def start(self) -> "Outpost":
        attempts = 3
        for attempt in range(attempts):
            self.port = free_port()
            with open(self.config_path, "w") as f:
                f.write(self.config_text())
            self._log_file = open(self.log_path, "ab")
            e = dict(os.environ)
            e.update(self.env or {})
            self.proc = subprocess.Popen(
                [outpost_bin(), "serve", "--config", self.config_path, *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
                cwd=self.tmp, env=e)
            if not self.wait_ready:
                return self
            try:
                self.wait_ready_now()
                return self
            except ProcessFailed:
                # a port picked by free_port() can be taken by someone else
                # before outpost binds it; retry only that case
                if "in use" in self.log_text().lower() and attempt + 1 < attempts:
                    self._reap()
                    continue
                raise
        raise AssertionError("unreachable")

    def wait_ready_now(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise ProcessFailed(
                    f"outpost exited with status {self.proc.returncode} before it was ready;"
                    f" stderr:\n{self.log_tail()}\nconfig:\n{self.config_text()}")
            try:
                http("GET", self.url + "/v2/", timeout=1.0)
                return True
            except (OSError, httpclient.HTTPException):
                return False

        deadline = time.monotonic() + scaled(self.startup_timeout)
        while True:
            if up():  # ProcessFailed propagates
                return
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"outpost not ready after {scaled(self.startup_timeout):.0f}s;"
                    f" stderr:\n{self.log_tail()}")
            time.sleep(0.02)

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout=scaled(timeout))
        self._close_log()
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM, check: bool = True) -> int:
        """Sends sig (SIGTERM), waits for exit, asserts the exit status
        (expect_exit) and that stderr has no sanitizer report."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=scaled(self.stop_timeout))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"outpost did not exit within {scaled(self.stop_timeout):.0f}s of"
                    f" signal {sig}; stderr:\n{self.log_tail()}")
        self.returncode = self.proc.returncode
        self._close_log()
        if check:
            self.check_exit()
        return self.returncode

    def check_exit(self) -> None:
        self.check_sanitizers()
        if self.expect_exit is not None and self.returncode != self.expect_exit:
            raise AssertionError(
                f"outpost exited with status {self.returncode}, expected {self.expect_exit};"
                f" stderr:\n{self.log_tail()}")

    def check_sanitizers(self) -> None:
        report = sanitizer_report(self.log_text())
        if report:
            raise AssertionError(f"sanitizer report in outpost stderr:\n{report}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self._close_log()

    def _reap(self) -> None:
        self.kill()
        self.proc = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        """SIGTERM (checked), then start again on the same port/storage."""
        self.stop()
        port = self.port
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [outpost_bin(), "serve", "--config", self.config_path, *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
            cwd=self.tmp, env={**os.environ, **(self.env or {})})
        self.port = port
        if self.wait_ready:
            self.wait_ready_now()

    # -- logs
    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def log_records(self) -> list[dict[str, str]]:
        """stderr parsed as logfmt, one dict per line."""
        return [parse_logfmt(l) for l in self.log_text().splitlines() if "=" in l]

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_text()), timeout,
                          message=lambda: f"log line matching {pattern!r}; tail:\n{self.log_tail(20)}")

    # -- context manager
    def __enter__(self) -> "Outpost":
        try:
            self.start()
        except BaseException:
            self.kill()
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.stop()
            else:
                # a test already failed: don't mask its error, but show stderr
                self.kill()
                print(f"# outpost stderr (tail):\n{self.log_tail()}", file=sys.stderr)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)


class SharedOutpostCase(unittest.TestCase):
    """One Outpost (default config) shared by every test of the class, as
    cls.op; subclasses extend setUpClass after super().setUpClass(). Stopped
    by a class cleanup, so it also goes when a subclass's setup fails."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.op = Outpost().__enter__()
        cls.addClassCleanup(cls.op.__exit__, None, None, None)


class DockerRegistry:
    """Debian's CNCF distribution 2.8 (`/usr/bin/docker-registry serve CONFIG`)
    on 127.0.0.1:<free port>, filesystem storage in a temp dir.

        with DockerRegistry() as reg:
            skopeo("copy", ..., f"docker://{reg.hostport}/x/y:1")
            reg.requests()   # [(method, path, status), ...] from its access log

    config: merged over the default YAML config (e.g. {"proxy": {"remoteurl": ...}}).
    stdout (the combined-format access log) goes to access_log_path, stderr
    (logrus app log, incl. "response completed" lines) to log_path.
    """

    BIN = "/usr/bin/docker-registry"

    def __init__(self, config: Mapping[str, Any] | None = None, startup_timeout: float = 15.0):
        self.tmp = _mktemp("docker-registry-e2e-")
        self.root = os.path.join(self.tmp, "storage")
        self.user_config = config
        self.startup_timeout = startup_timeout
        self.config_path = os.path.join(self.tmp, "config.yml")
        self.log_path = os.path.join(self.tmp, "registry.stderr.log")
        self.access_log_path = os.path.join(self.tmp, "registry.access.log")
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._files: list = []

    def default_config(self) -> dict:
        return {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": self.root},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"{self.host}:{self.port}", "secret": "outpost-e2e-secret"},
        }

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "DockerRegistry":
        if not os.access(self.BIN, os.X_OK):
            raise FileNotFoundError(f"{self.BIN} missing: run .ci/install-deps")
        for attempt in range(3):
            self.port = free_port()
            with open(self.config_path, "w") as f:
                f.write(to_yaml(deep_merge(self.default_config(), self.user_config)) + "\n")
            out = open(self.access_log_path, "ab")
            err = open(self.log_path, "ab")
            self._files = [out, err]
            self.proc = subprocess.Popen([self.BIN, "serve", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.tmp)

            def up() -> bool:
                if self.proc.poll() is not None:
                    raise ProcessFailed(f"docker-registry exited {self.proc.returncode}:\n"
                                        f"{tail(self.log_path)}")
                try:
                    return http("GET", self.url + "/v2/", timeout=1.0).status == 200
                except (OSError, httpclient.HTTPException):
                    return False

            try:
                wait_until(up, self.startup_timeout, message="docker-registry to answer GET /v2/")
                return self
            except ProcessFailed:
                if "in use" in tail(self.log_path).lower() and attempt < 2:
                    self.stop()
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for f in self._files:
            f.close()
        self._files = []

    def access_log(self) -> str:
        try:
            with open(self.access_log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    _ACCESS_RX = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) for every request in the access log, in order."""
        out = []
        for line in self.access_log().splitlines():
            m = self._ACCESS_RX.search(line)
            if m:
                out.append((m.group("method"), m.group("path"), int(m.group("status"))))
        return out

    def __enter__(self) -> "DockerRegistry":
        try:
            return self.start()
        except BaseException:
            self.stop()
            self._cleanup()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            print(f"# docker-registry stderr (tail):\n{tail(self.log_path, 30)}", file=sys.stderr)
        self.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# skopeo

def skopeo(*args: str, timeout: float = 120.0, check: bool = True,
           env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `skopeo --insecure-policy ARGS...` (policy.json is not needed) and
    returns the CompletedProcess (text). check=True raises with its stderr."""
    cmd = ["skopeo", "--insecure-policy", *args]
    e = dict(os.environ)
    e.update(env or {})
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(timeout), env=e)
    except subprocess.TimeoutExpired as ex:
        raise AssertionError(f"skopeo timed out after {scaled(timeout):.0f}s: {' '.join(cmd)}\n"
                             f"stderr: {ex.stderr}") from None
    if check and p.returncode != 0:
        raise AssertionError(f"skopeo failed ({p.returncode}): {' '.join(cmd)}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def skopeo_copy(src: str, dst: str, *extra: str, **kw) -> subprocess.CompletedProcess:
    """skopeo copy with TLS verification off for docker:// (plain HTTP on loopback)."""
    flags = []
    if src.startswith("docker://"):
        flags.append("--src-tls-verify=false")
    if dst.startswith("docker://"):
        flags.append("--dest-tls-verify=false")
    return skopeo("copy", *flags, *extra, src, dst, **kw)


# --------------------------------------------------------------------------
# OCI image layouts

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_ALL_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def make_layer(files: Mapping[str, bytes], compress: bool = True) -> bytes:
    """A deterministic layer blob (tar, gzip'ed by default) holding files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            ti.mode = 0o644
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            tf.addfile(ti, io.BytesIO(data))
    if not compress:
        return raw.getvalue()
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def random_layer(size: int, seed: int = 0, compress: bool = True) -> bytes:
    """A layer with one file of `size` pseudo-random (incompressible) bytes."""
    rnd = hashlib.shake_256(f"outpost-e2e-{seed}".encode()).digest(size) if size else b""
    return make_layer({f"data-{seed}.bin": rnd}, compress=compress)


@dataclass
class Image:
    manifest_digest: str
    manifest: bytes
    config_digest: str
    layer_digests: list[str]
    platform: dict | None = None


@dataclass
class Layout:
    """What make_oci_layout wrote. `ref` is skopeo's source reference
    (oci:DIR:TAG); `top_digest` is the digest the tag points at (the index
    for multi-arch, else the manifest); `blobs` maps every digest to its bytes."""
    path: str
    tag: str
    top_digest: str
    top_media_type: str
    images: list[Image]
    blobs: dict[str, bytes] = field(default_factory=dict)
    index_bytes: bytes | None = None

    @property
    def ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"

    @property
    def top_bytes(self) -> bytes:
        return self.blobs[self.top_digest]


def _layer_media_type(blob: bytes) -> str:
    return OCI_LAYER_GZIP if blob[:2] == b"\x1f\x8b" else OCI_LAYER_TAR


def _diff_id(blob: bytes) -> str:
    return sha256_digest(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=False).encode()


def make_oci_layout(path: str, layers: list[bytes | Mapping[str, bytes]] | None = None,
                    tag: str = "latest",
                    platforms: list[tuple[str, str] | tuple[str, str, str]] | None = None,
                    config_extra: Mapping[str, Any] | None = None,
                    annotations: Mapping[str, str] | None = None,
                    per_platform_layer: bool = True) -> Layout:
    """Writes an OCI image layout at `path` (created if needed) and returns a Layout.

    layers   : each item is a layer blob (bytes; gzip detected by magic, else
               plain tar) or a {filename: bytes} dict turned into a tar.gz;
               default: one small tar.gz layer.
    platforms: None = a single image manifest tagged `tag`. Otherwise a list
               of (os, arch[, variant]); each gets its own config and manifest
               (plus, with per_platform_layer, a tiny layer naming the
               platform so the images differ in content too) and `tag`
               points at an image index listing them all.
    Several calls with different tags into the same path add to index.json.
    """
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> str:
        d = sha256_digest(data)
        blobs[d] = data
        p = os.path.join(path, "blobs", "sha256", d.split(":", 1)[1])
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        return d

    if layers is None:
        layers = [{"hello.txt": b"hello from outpost e2e\n"}]
    base_layers = [make_layer(x) if isinstance(x, Mapping) else bytes(x) for x in layers]

    def image(plat: tuple | None) -> Image:
        lyr = list(base_layers)
        if plat is not None and per_platform_layer:
            lyr.append(make_layer({"platform.txt": "/".join(plat).encode() + b"\n"}))
        os_, arch = (plat[0], plat[1]) if plat else ("linux", "amd64")
        cfg = {
            "created": "1970-01-01T00:00:00Z",
            "architecture": arch,
            "os": os_,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [_diff_id(b) for b in lyr]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "outpost e2e"}
                        for _ in lyr],
        }
        if plat is not None and len(plat) > 2:
            cfg["variant"] = plat[2]
        cfg.update(config_extra or {})
        cfg_bytes = _dumps(cfg)
        cfg_d = put(cfg_bytes)
        layer_descs = []
        for b in lyr:
            layer_descs.append({"mediaType": _layer_media_type(b), "digest": put(b), "size": len(b)})
        man: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg_bytes)},
            "layers": layer_descs,
        }
        if annotations:
            man["annotations"] = dict(annotations)
        man_bytes = _dumps(man)
        man_d = put(man_bytes)
        platform = None
        if plat is not None:
            platform = {"architecture": arch, "os": os_}
            if len(plat) > 2:
                platform["variant"] = plat[2]
        return Image(man_d, man_bytes, cfg_d, [d["digest"] for d in layer_descs], platform)

    index_bytes = None
    if platforms:
        images = [image(tuple(p)) for p in platforms]
        idx = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": im.manifest_digest,
                           "size": len(im.manifest), "platform": im.platform} for im in images],
        }
        if annotations:
            idx["annotations"] = dict(annotations)
        index_bytes = _dumps(idx)
        top_d, top_mt, top_size = put(index_bytes), OCI_INDEX, len(index_bytes)
    else:
        images = [image(None)]
        top_d, top_mt, top_size = images[0].manifest_digest, OCI_MANIFEST, len(images[0].manifest)

    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    index_path = os.path.join(path, "index.json")
    top_index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            top_index = json.load(f)
    top_index["manifests"] = [
        m for m in top_index.get("manifests", [])
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    top_index["manifests"].append({
        "mediaType": top_mt, "digest": top_d, "size": top_size,
        "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as f:
        json.dump(top_index, f, indent=2)

    return Layout(path, tag, top_d, top_mt, images, blobs, index_bytes)


# --------------------------------------------------------------------------
# pull-through helpers (docker-registry access log, parents)

_MARK_SEQ = [0]


def registry_mark(reg: "DockerRegistry", timeout: float = 10.0) -> int:
    """Sends a marker request straight to `reg` and waits until its access
    log shows it; returns the marker's index in reg.requests(). Requests
    that finished before the call are then all in reg.requests()[:index]
    (the log is written as each response completes), so slicing between two
    marks gives exactly what happened in between, with no sleeps."""
    _MARK_SEQ[0] += 1
    path = f"/v2/e2e-mark-{os.getpid()}-{_MARK_SEQ[0]}/tags/list"
    http("GET", reg.url + path, timeout=timeout)

    def found() -> int | None:
        for i, (_m, p, _s) in enumerate(reg.requests()):
            if p == path:
                return i + 1  # truthy even at index 0
        return None

    return wait_until(found, timeout, message=f"marker {path} in the registry access log") - 1


def registry_requests_between(reg: "DockerRegistry", start: int, end: int | None = None,
                              ) -> list[tuple[str, str, int]]:
    """reg.requests() strictly between two registry_mark() indexes, without
    any marker lines."""
    reqs = reg.requests()
    sl = reqs[start + 1:end] if end is not None else reqs[start + 1:]
    return [r for r in sl if "/e2e-mark-" not in r[1]]


def push_layout(layout: "Layout", registry_hostport: str, repo: str,
                tag: str | None = None) -> None:
    """skopeo copy --all --preserve-digests of an OCI layout into a registry
    (plain HTTP on loopback)."""
    skopeo_copy(layout.ref, f"docker://{registry_hostport}/{repo}:{tag or layout.tag}",
                "--all", "--preserve-digests", timeout=300)


def push_blob(registry_url: str, repo: str, data: bytes, timeout: float = 120.0) -> str:
    """A blob pushed with POST + PUT ?digest= (what every registry accepts)."""
    d = sha256_digest(data)
    r = http("POST", f"{registry_url}/v2/{repo}/blobs/uploads/", timeout=timeout)
    if r.status != 202:
        raise AssertionError(f"POST upload: {r.status} {r.body[:300]!r}")
    loc = r.header("Location") or ""
    if loc.startswith("/"):
        loc = registry_url + loc
    loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(d)
    r = http("PUT", loc, body=data, headers={"Content-Type": "application/octet-stream"}, timeout=timeout)
    if r.status != 201:
        raise AssertionError(f"PUT upload {d}: {r.status} {r.body[:300]!r}")
    return d
