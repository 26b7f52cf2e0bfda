"""Helpers for the connected-registry e2e modules (issue #15: push replay,
sync windows, ReadWrite/ReadOnly hierarchy, kept repositories).

  sync_ready() / requires_sync   gate: skip until `outpost config` prints [sync]
  sync_config(...)               an Outpost config dict with [parent]/[registry]/[sync]
  sync_now(op, ...)              `outpost sync now [--wait] --config <op's file>`
  sync_status(op) / metric(op)   /outpost/status "sync" object, /metrics values
  wait_drained(op)               queue empty, nothing failed
  PinnedOutpost / PinnedRegistry keep their port across restarts (or take a given one)
  ThrottleProxy                  TCP proxy that slows the child->parent direction and
                                 counts its bytes (to stop things in the middle of a layer)
  RefusingParent                 a parent answering every write with 403 DENIED
  registry_write_failures(reg)   write requests the cloud answered with an error,
                                 from its access log and its error log
  pull_layout(...)               skopeo copy --all to an OCI layout; returns the top digest
  push_referrer / referrers      an OCI 1.1 signature artifact for a subject; the referrers API
  assert_registry_holds(...)     a registry serves exactly a Layout (every manifest, blob)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping

from harness import (ACCEPT_ALL_MANIFESTS, OCI_MANIFEST, DockerRegistry, Layout, Outpost, ProcessFailed,
                     deep_merge, http, outpost_bin, push_blob, run_outpost, scaled, sha256_digest, skopeo_copy,
                     tail, to_yaml, wait_until)

# --------------------------------------------------------------------------
# gate: the modules using these helpers run once the feature exists


def sync_ready() -> bool:
    """True when this build has issue #15's sync: `outpost config` (the
    effective default configuration) prints a [sync] table. OUTPOST_SYNC_READY=1
    forces the tests on (to watch them fail while building the feature)."""
    if os.environ.get("OUTPOST_SYNC_READY") == "1":
        return True
    try:
        p = run_outpost("config", timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0 and re.search(r"(?m)^\[sync\]\s*$", p.stdout) is not None


SYNC_READY = sync_ready()
SKIP_REASON = ("issue #15 sync is not built yet: `outpost config` prints no [sync] table"
               " (OUTPOST_SYNC_READY=1 runs these tests anyway)")


def requires_sync(cls):
    """Class decorator: skip the whole TestCase until the feature exists."""
    return unittest.skipUnless(SYNC_READY, SKIP_REASON)(cls)


# --------------------------------------------------------------------------
# configuration

# A schedule whose window is never open during a test run (00:00 on 1 January,
# one hour): nothing moves until `outpost sync now`.
CLOSED = {"schedule": "0 0 1 1 *", "window": "1h"}


def sync_config(parent_url: str | None, mode: str = "ReadWrite", sync: Mapping[str, Any] | None = None,
                **tables: Mapping[str, Any]) -> dict:
    """Config for harness.Outpost: [registry] mode, [parent] url, [sync] as
    given (None: no [sync] table = continuous sync, defaults), plus any other
    tables (e.g. cache={"tag_ttl": "1s"})."""
    cfg: dict[str, Any] = {"registry": {"mode": mode}}
    if parent_url:
        cfg["parent"] = {"url": parent_url, "timeout": "10s", "connect_timeout": "2s"}
    if sync is not None:
        cfg["sync"] = dict(sync)
    for k, v in tables.items():
        cfg[k] = deep_merge(cfg.get(k, {}), v)
    return cfg


# --------------------------------------------------------------------------
# operating it


def sync_now(op: Outpost, wait: bool = True, timeout: float = 120.0, check: bool = True,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`outpost sync now [--wait] --config <op.config_path>`. check=True
    asserts exit 0 (with --wait: the queue drained with no failure)."""
    args = ["sync", "now"] + (["--wait"] if wait else []) + ["--config", op.config_path]
    try:
        p = run_outpost(*args, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`outpost {' '.join(args)}` still running after {scaled(timeout):.0f}s;"
                             f" output so far: {e.stdout!r} {e.stderr!r}\nstatus: {_status_text(op)}"
                             f"\noutpost stderr:\n{op.log_tail(40)}") from None
    if check and p.returncode != 0:
        raise AssertionError(f"`outpost {' '.join(args)}` exited {p.returncode}\nstdout: {p.stdout}\n"
                             f"stderr: {p.stderr}\nstatus: {_status_text(op)}\n"
                             f"outpost stderr:\n{op.log_tail(40)}")
    return p


def _status_text(op: Outpost) -> str:
    try:
        return http("GET", op.url + "/outpost/status", timeout=5).body.decode("utf-8", "replace")
    except OSError as e:
        return f"(no status: {e!r})"


def status(op: Outpost) -> dict:
    r = http("GET", op.url + "/outpost/status")
    if r.status != 200:
        raise AssertionError(f"/outpost/status: {r.status} {r.body[:300]!r}")
    return r.json()


def sync_status(op: Outpost) -> dict:
    """The "sync" object of /outpost/status."""
    s = status(op)
    if "sync" not in s:
        raise LookupError(f"no \"sync\" in /outpost/status: {s}")
    return s["sync"]


def metric(op: Outpost, name: str) -> float:
    """The value of an unlabelled metric (the first sample of `name`)."""
    text = http("GET", op.url + "/metrics").body.decode()
    m = re.search(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text)
    if not m:
        raise LookupError(f"{name} not in /metrics")
    return float(m.group(1))


def wait_drained(op: Outpost, timeout: float = 60.0) -> dict:
    """Waits until the replay queue is empty with nothing failed or expired;
    returns the sync status."""
    def drained():
        s = sync_status(op)
        q = s["queue"]
        if q["failed"] or q["expired"]:
            raise ProcessFailed(f"replay entries failed/expired: {json.dumps(s, indent=1)}")
        return s if q["pending"] == 0 else None
    return wait_until(drained, timeout, interval=0.1,
                      message=lambda: f"replay queue of {op.url} to drain; status: {_status_text(op)}")


# --------------------------------------------------------------------------
# processes on a fixed port


class PinnedOutpost(Outpost):
    """An Outpost on a port chosen by the caller (e.g. one a child already
    points at), or its first free port kept across restarts."""

    def __init__(self, *a, port: int | None = None, **kw):
        super().__init__(*a, **kw)
        self.pinned = port

    def start(self) -> "PinnedOutpost":
        if self.pinned is None:
            super().start()
            self.pinned = self.port
            return self
        self.port = self.pinned
        with open(self.config_path, "w") as f:
            f.write(self.config_text())
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [outpost_bin(), "serve", "--config", self.config_path, *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
            cwd=self.tmp, env={**os.environ, **(self.env or {})})
        if self.wait_ready:
            self.wait_ready_now()
        return self


class PinnedRegistry(DockerRegistry):
    """A DockerRegistry that keeps its port and storage across stop()/start()
    (the cloud going away and coming back at the same address)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pinned: int | None = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "PinnedRegistry":
        if self.pinned is None:
            super().start()
            self.pinned = self.port
            return self
        self.port = self.pinned
        with open(self.config_path, "w") as f:
            f.write(to_yaml(deep_merge(self.default_config(), self.user_config)) + "\n")
        self._files = [open(self.access_log_path, "ab"), open(self.log_path, "ab")]
        self.proc = subprocess.Popen([self.BIN, "serve", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=self._files[0], stderr=self._files[1], cwd=self.tmp)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise ProcessFailed(f"docker-registry exited {self.proc.returncode}:\n{tail(self.log_path)}")
            return http("GET", self.url + "/v2/", timeout=1.0).status == 200

        wait_until(up, self.startup_timeout, message=f"docker-registry back on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL (no draining), then close the log files like stop()."""
        if self.running():
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stop()


# --------------------------------------------------------------------------
# a throttling TCP proxy between a child and its parent


class ThrottleProxy:
    """Listens on 127.0.0.1:<port> and forwards every connection to
    127.0.0.1:<target_port>. Bytes from the child to the parent go at most
    `rate` bytes/s in all (None: unlimited) and are counted in `up_bytes`, so
    a test can act while a large layer is half way up. Throttling is pacing,
    not synchronisation: the tests wait on up_bytes."""

    CHUNK = 32 * 1024

    def __init__(self, target_port: int, rate: float | None = None):
        self.target_port = target_port
        self.rate = rate
        self.up_bytes = 0
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.stopping = False
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.05)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_rate(self, rate: float | None) -> None:
        with self.lock:
            self.rate = rate

    def _accept(self) -> None:
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                c.close()   # the parent is down: the child sees a reset, as without a proxy
                continue
            c.settimeout(None)
            u.settimeout(None)
            with self.lock:
                self.socks += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(self.CHUNK)
                if not data:
                    break
                with self.lock:
                    rate = self.rate
                if upstream and rate:
                    time.sleep(len(data) / rate)   # pacing of the link, not a wait for an event
                dst.sendall(data)
                if upstream:
                    with self.lock:
                        self.up_bytes += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.lsock.close()
        self.thread.join(5)
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> "ThrottleProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# a parent that refuses every write for good


class _Refuse(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:
        pass

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.seen.append((self.command, self.path))  # type: ignore[attr-defined]
        if self.path.rstrip("/") == "/v2" and self.command in ("GET", "HEAD"):
            status, body = 200, b"{}"
        elif self.command in ("GET", "HEAD"):
            status, body = 404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN" if "/manifests/" in self.path
                                                        else "BLOB_UNKNOWN", "message": "unknown"}]}).encode()
        else:
            status, body = 403, json.dumps({"errors": [{"code": "DENIED",
                                                        "message": "this site may not push here"}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


class RefusingParent:
    """A registry stand-in on 127.0.0.1: GET /v2/ 200, every other read 404,
    every write 403 DENIED (a 4xx that will never succeed). `writes()` lists
    the write requests it received."""

    def __init__(self):
        class Srv(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.httpd = Srv(("127.0.0.1", 0), _Refuse)
        self.httpd.lock = threading.Lock()  # type: ignore[attr-defined]
        self.httpd.seen = []                # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[tuple[str, str]]:
        with self.httpd.lock:  # type: ignore[attr-defined]
            return list(self.httpd.seen)  # type: ignore[attr-defined]

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.seen() if r[0] not in ("GET", "HEAD")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> "RefusingParent":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# what the cloud received

WRITE_METHODS = ("PUT", "POST", "PATCH", "DELETE")

# distribution's error log: `level=error msg="response completed with error"
# err.code="manifest blob unknown" ... http.request.method=PUT ...`
_ERR_RX = re.compile(r'msg="response completed with error".*?err\.code="(?P<code>[^"]*)"'
                     r'.*?http\.request\.method=(?P<method>[A-Z]+)'
                     r'.*?http\.request\.uri=(?P<uri>\S+)')

MISSING_CODES = ("manifest blob unknown", "blob unknown", "manifest unknown", "blob upload unknown")


def registry_error_lines(reg: DockerRegistry) -> list[tuple[str, str, str]]:
    """(method, uri, err.code) of every request distribution answered with
    an error, from its stderr log."""
    try:
        with open(reg.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [(m.group("method"), m.group("uri"), m.group("code")) for m in _ERR_RX.finditer(text)]


def registry_write_failures(reg: DockerRegistry, requests: list[tuple[str, str, int]] | None = None,
                            ) -> list[str]:
    """Every write the registry refused: write requests with a 4xx/5xx status
    in its access log (or in `requests`, a slice of it) and every write its
    error log says failed for a missing blob, manifest or upload. Empty when
    the parent saw an orderly replay (blobs before manifests, children before
    their index)."""
    reqs = reg.requests() if requests is None else requests
    bad = [f"{m} {p} -> {s}" for m, p, s in reqs if m in WRITE_METHODS and s >= 400]
    bad += [f"{m} {u}: {c}" for m, u, c in registry_error_lines(reg)
            if m in WRITE_METHODS and c in MISSING_CODES]
    return bad


# --------------------------------------------------------------------------
# images


def manifest_digest(url: str, repo: str, ref: str) -> tuple[int, str | None, bytes]:
    """(status, Docker-Content-Digest or digest of the body, body) of a GET
    manifest straight at `url`."""
    r = http("GET", f"{url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL_MANIFESTS}, timeout=30)
    if r.status != 200:
        return r.status, None, r.body
    return r.status, r.header("Docker-Content-Digest") or sha256_digest(r.body), r.body


SIGNATURE_TYPE = "application/vnd.example.signature.v1"


def push_referrer(url: str, repo: str, subject: str, subject_media_type: str, subject_size: int,
                  payload: bytes, artifact_type: str = SIGNATURE_TYPE) -> tuple[str, bytes, str]:
    """An OCI 1.1 artifact (empty config, one blob holding `payload`) whose
    subject is `subject`, pushed by digest; returns (manifest digest, manifest
    bytes, payload blob digest)."""
    empty = push_blob(url, repo, b"{}")
    blob = push_blob(url, repo, payload)
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
           "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": len(payload)}],
           "subject": {"mediaType": subject_media_type, "digest": subject, "size": subject_size}}
    body = json.dumps(man, separators=(",", ":"), sort_keys=True).encode()
    d = sha256_digest(body)
    r = http("PUT", f"{url}/v2/{repo}/manifests/{d}", body=body, headers={"Content-Type": OCI_MANIFEST})
    if r.status != 201:
        raise AssertionError(f"PUT referrer {repo}@{d}: {r.status} {r.body[:300]!r}")
    return d, body, blob


def referrers(url: str, repo: str, subject: str) -> list[str]:
    """Digests the referrers API of `url` lists for `subject`."""
    r = http("GET", f"{url}/v2/{repo}/referrers/{subject}", timeout=30)
    if r.status != 200:
        raise AssertionError(f"referrers {repo}@{subject}: {r.status} {r.body[:300]!r}")
    return [m["digest"] for m in r.json()["manifests"]]


def pull_layout(hostport: str, repo: str, tag: str, dest: str, timeout: float = 300) -> str:
    """skopeo copy --all docker://hostport/repo:tag -> oci:dest:tag (skopeo
    checks every blob's digest); returns the digest the tag pointed at."""
    skopeo_copy(f"docker://{hostport}/{repo}:{tag}", f"oci:{dest}:{tag}", "--all", "--preserve-digests",
                timeout=timeout)
    with open(os.path.join(dest, "index.json")) as f:
        idx = json.load(f)
    for m in idx["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"]
    raise AssertionError(f"{dest}/index.json has no {tag}: {idx}")


def assert_registry_holds(tc: unittest.TestCase, url: str, repo: str, tag: str, lay: Layout,
                          verify_blobs_up_to: int = 1 << 20) -> None:
    """The registry at `url` serves `lay` under repo:tag byte for byte: the
    tag's digest and bytes, every image manifest by digest, every blob
    (HEAD with the right size; bodies hashed up to verify_blobs_up_to bytes,
    bigger ones are checked by a skopeo pull in the tests)."""
    st, d, body = manifest_digest(url, repo, tag)
    tc.assertEqual(st, 200, f"{url} {repo}:{tag}: {body[:300]!r}")
    tc.assertEqual(d, lay.top_digest, f"{url} {repo}:{tag}")
    tc.assertEqual(sha256_digest(body), lay.top_digest)
    for im in lay.images:
        st, d, body = manifest_digest(url, repo, im.manifest_digest)
        tc.assertEqual((st, d), (200, im.manifest_digest), f"{url} {repo}@{im.manifest_digest}")
        for bd in [im.config_digest, *im.layer_digests]:
            want = len(lay.blobs[bd])
            r = http("HEAD", f"{url}/v2/{repo}/blobs/{bd}", timeout=30)
            tc.assertEqual(r.status, 200, f"{url} {repo} blob {bd}")
            tc.assertEqual(int(r.header("Content-Length") or -1), want, f"{url} {repo} blob {bd} size")
            if want <= verify_blobs_up_to:
                g = http("GET", f"{url}/v2/{repo}/blobs/{bd}", timeout=60)
                tc.assertEqual((g.status, sha256_digest(g.body)), (200, bd), f"{url} {repo} blob {bd} bytes")
