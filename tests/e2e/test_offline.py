"""Offline mode (DESIGN.md invariant 5): the parent being slow, wrong or gone
never blocks a client that asks for something held locally.

One Outpost is warmed from a real docker-registry parent holding a
multi-arch image; then the parent (a) refuses connections (registry
stopped), (b) accepts connections and never answers (a listener holding the
sockets), (c) answers everything with 503. Each time a full `skopeo copy
--all` of the warm image through Outpost succeeds with identical digests,
far inside one upstream deadline (parent.timeout = 30 s); once /metrics
says offline, a cold miss gets 503 UNAVAILABLE at once and never reaches
the parent; offline answers carry Outpost-Cache / Outpost-Tag-Age. A tag
moved on the parent during an outage is seen after the parent returns,
without restarting Outpost. A second Outpost with parent.offline = true
serves what was pushed to it and never opens a connection to its parent.

Timing: tag_ttl is 1 s, so a cached tag goes stale between steps; the
only sleeps age that tag (they wait for a TTL, never for an event).
"""

from __future__ import annotations

import contextlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
import re
import socket
import tempfile
import threading
import time
import unittest

from harness import (ACCEPT_ALL_MANIFESTS, DockerRegistry, Outpost, ProcessFailed, free_port, http,
                     make_oci_layout, push_blob, random_layer, scaled, sha256_digest, skopeo_copy,
                     wait_until)

PARENT_TIMEOUT_S = int(scaled(30))   # one upstream deadline
FAST_PULL_S = scaled(10)             # "much less than one deadline"
FAST_MISS_S = scaled(2)              # a miss while offline answers at once
TRIAL_S = scaled(4.5)                # ... but for the breaker's trial: the 3 s probe deadline
TRIAL_INTERVAL_S = 2.0               # upstream::Health::kTrialIntervalMs
TAG_TTL_S = 1.0
RECOVERY_S = 10.0                    # probe backoff tops out at 3 s (issue #13)


# --------------------------------------------------------------------------
# stand-ins for a broken parent (threads of this process, on a given port)

def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


class HangingListener:
    """Accepts every connection on 127.0.0.1:port, reads what arrives (kept
    in `received`) and never answers; close() drops every socket."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.sock = _listen(self.port)
        self.sock.settimeout(0.05)
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.received: list[bytes] = []
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = c.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            with self.lock:
                self.received.append(chunk)

    def request_lines(self) -> list[str]:
        with self.lock:
            data = b"".join(self.received)
        return re.findall(r"(?m)^(?:GET|HEAD|POST|PUT|PATCH|DELETE) \S+", data.decode("latin-1"))

    def close(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.close()
        self.thread.join(5)
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()

    def __enter__(self) -> "HangingListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Always503(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.conns.append(self.connection)  # type: ignore[attr-defined]

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.seen.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "down for maintenance"}]}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "60")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


class Always503Server:
    """An HTTP server on 127.0.0.1:port answering every request with 503."""

    def __init__(self, port: int):
        class Srv(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self.port = port
        self.httpd = Srv(("127.0.0.1", port), _Always503)
        self.httpd.lock = threading.Lock()  # type: ignore[attr-defined]
        self.httpd.seen = []                # type: ignore[attr-defined]
        self.httpd.conns = []               # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def seen(self) -> list[str]:
        with self.httpd.lock:  # type: ignore[attr-defined]
            return list(self.httpd.seen)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stops like a process exiting: the listener and every kept-alive
        connection close (else Outpost's pooled connection would keep
        reaching this server after the real parent is back)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        with self.httpd.lock:  # type: ignore[attr-defined]
            conns, self.httpd.conns = self.httpd.conns, []  # type: ignore[attr-defined]
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "Always503Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PinnedRegistry(DockerRegistry):
    """A DockerRegistry that keeps its port across stop()/start() (the
    parent coming back at the same address), optionally on another
    registry's storage root."""

    def __init__(self, port: int | None = None, root: str | None = None, **kw):
        super().__init__(**kw)
        self.pinned = port
        if root:
            self.root = root

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "PinnedRegistry":
        import subprocess
        if self.pinned is None:
            super().start()
            self.pinned = self.port
            return self
        self.port = self.pinned
        from harness import deep_merge, to_yaml
        with open(self.config_path, "w") as f:
            f.write(to_yaml(deep_merge(self.default_config(), self.user_config)) + "\n")
        out = open(self.access_log_path, "ab")
        err = open(self.log_path, "ab")
        self._files = [out, err]
        self.proc = subprocess.Popen([self.BIN, "serve", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=err, cwd=self.tmp)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise ProcessFailed(f"docker-registry exited {self.proc.returncode}")
            return http("GET", self.url + "/v2/", timeout=1.0).status == 200

        wait_until(up, self.startup_timeout, message=f"docker-registry back on port {self.port}")
        return self


# --------------------------------------------------------------------------
# reading Outpost's state

def metric(op: Outpost, name: str, upstream: str | None = None) -> float:
    text = http("GET", op.url + "/metrics").body.decode()
    label = r'\{upstream="%s"\}' % re.escape(upstream) if upstream else ""
    m = re.search(r"(?m)^%s%s (\S+)$" % (re.escape(name), label), text)
    if not m:
        raise LookupError(f"{name} {upstream or ''} not in /metrics:\n{text}")
    return float(m.group(1))


def upstream_state(op: Outpost) -> int:
    return int(metric(op, "outpost_upstream_state", "parent"))


def parent_status(op: Outpost) -> dict:
    r = http("GET", op.url + "/outpost/status")
    assert r.status == 200, r
    j = r.json()
    for u in j["upstreams"]:
        if u["name"] == "parent":
            return {**u, "_cache": j.get("cache", {})}
    raise LookupError(f"no parent in /outpost/status: {j}")


def oci_error(r) -> tuple[str, str]:
    try:
        e = json.loads(r.body)["errors"][0]
        return e.get("code", ""), e.get("message", "")
    except (ValueError, KeyError, IndexError, TypeError):
        return "", r.body[:200].decode("latin-1")


class OfflineMode(unittest.TestCase):
    """Runs in name order; each test starts with the parent up and Outpost
    online (setUp waits for it) and leaves the real parent running again."""

    @classmethod
    def setUpClass(cls):
        cls._tmpdir = tempfile.TemporaryDirectory(prefix="offline-e2e-")
        tmp = cls._tmpdir.name
        cls.started = time.time()
        cls.lay = make_oci_layout(os.path.join(tmp, "app"), tag="v1",
                                  layers=[{"etc/motd": b"offline e2e\n"}, random_layer(256 * 1024, seed=51)],
                                  platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cls.old = make_oci_layout(os.path.join(tmp, "old"), tag="moving",
                                  layers=[{"version.txt": b"old\n"}])
        cls.new = make_oci_layout(os.path.join(tmp, "new"), tag="moving",
                                  layers=[{"version.txt": b"new\n"}, random_layer(64 * 1024, seed=52)],
                                  platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cls.stuck_old = make_oci_layout(os.path.join(tmp, "stuck-old"), tag="t",
                                        layers=[{"version.txt": b"stuck old\n"}])
        cls.stuck_new = make_oci_layout(os.path.join(tmp, "stuck-new"), tag="t",
                                        layers=[{"version.txt": b"stuck new\n"}])
        cls.parent = PinnedRegistry()
        cls.op = Outpost(config={
            "parent": {"url": "", "timeout": f"{PARENT_TIMEOUT_S}s"},
            "cache": {"tag_ttl": "1s", "revalidate_wait": "1s"},
        })
        try:
            cls.parent.start()
            cls._push(cls.lay, cls.parent, "e2e/app")
            cls._push(cls.old, cls.parent, "e2e/moving")
            cls._push(cls.stuck_old, cls.parent, "e2e/stuck")
            cls.op.user_config["parent"]["url"] = cls.parent.url
            cls.op.start()
        except BaseException:
            cls._teardown(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls._teardown(failed=False)

    @classmethod
    def _teardown(cls, failed: bool) -> None:
        try:
            if cls.op.proc is not None:
                if failed:
                    cls.op.kill()
                else:
                    cls.op.stop()
        finally:
            cls.op._cleanup()
            cls.parent.stop()
            cls.parent._cleanup()
            cls._tmpdir.cleanup()

    @staticmethod
    def _push(layout, reg, repo: str) -> None:
        skopeo_copy(layout.ref, f"docker://{reg.hostport}/{repo}:{layout.tag}", "--all",
                    "--preserve-digests", timeout=120)

    # -- per test
    def setUp(self):
        self.op.check_sanitizers()
        if not self.parent.running():
            self.parent.start()
        wait_until(lambda: upstream_state(self.op) == 0, RECOVERY_S,
                   message=lambda: f"outpost online; log tail:\n{self.op.log_tail(15)}")
        # The warm state: the multi-arch image pulled through once.
        if not getattr(type(self), "_warm", False):
            self.pull_and_compare("e2e/app", self.lay)
            r = self.get_manifest("e2e/moving", "moving")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("Docker-Content-Digest"), self.old.top_digest)
            r = self.get_manifest("e2e/stuck", "t")
            self.assertEqual(r.header("Docker-Content-Digest"), self.stuck_old.top_digest)
            type(self)._warm = True

    def tearDown(self):
        # Whatever the test broke, the real parent comes back on its port.
        if not self.parent.running():
            self.parent.start()

    # -- helpers
    def get_manifest(self, repo: str, ref: str, method: str = "GET"):
        return http(method, f"{self.op.url}/v2/{repo}/manifests/{ref}",
                    headers={"Accept": ACCEPT_ALL_MANIFESTS}, timeout=PARENT_TIMEOUT_S + 10)

    def pull_and_compare(self, repo: str, layout) -> float:
        """skopeo copy --all of repo:tag through Outpost into a fresh OCI
        layout; asserts the same index digest and every blob byte for byte;
        returns the elapsed seconds."""
        with tempfile.TemporaryDirectory(prefix="offline-pull-") as d:
            out = os.path.join(d, "out")
            t0 = time.monotonic()
            skopeo_copy(f"docker://{self.op.host}:{self.op.port}/{repo}:{layout.tag}",
                        f"oci:{out}:{layout.tag}", "--all", "--preserve-digests",
                        timeout=PARENT_TIMEOUT_S * 3)
            elapsed = time.monotonic() - t0
            with open(os.path.join(out, "index.json")) as f:
                idx = json.load(f)
            tops = [m["digest"] for m in idx["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == layout.tag]
            self.assertEqual(tops, [layout.top_digest])
            for dg, data in layout.blobs.items():
                p = os.path.join(out, "blobs", "sha256", dg.split(":", 1)[1])
                self.assertTrue(os.path.exists(p), f"{dg} missing from the pulled layout")
                with open(p, "rb") as f:
                    self.assertEqual(sha256_digest(f.read()), dg)
        return elapsed

    def age_tags(self) -> None:
        # Let every cached tag go stale (tag_ttl), so the next pull must ask
        # the parent. Waiting out a TTL, not synchronising with an event.
        time.sleep(TAG_TTL_S + 0.2)

    def counters(self) -> dict[str, float]:
        return {n: metric(self.op, n) for n in ("outpost_cache_served_offline_total",
                                                "outpost_cache_offline_misses_total")}

    def warm_pull_is_fast(self, case: str) -> None:
        before = self.counters()
        elapsed = self.pull_and_compare("e2e/app", self.lay)
        self.assertLess(elapsed, FAST_PULL_S,
                        f"{case}: warm pull took {elapsed:.1f}s with the parent broken "
                        f"(parent.timeout {PARENT_TIMEOUT_S}s)")
        after = self.counters()
        # The stale tag was answered from the cache, unconfirmed.
        self.assertGreater(after["outpost_cache_served_offline_total"],
                           before["outpost_cache_served_offline_total"], case)

    def wait_offline(self, case: str) -> None:
        wait_until(lambda: upstream_state(self.op) == 2, scaled(15),
                   message=lambda: f"{case}: outpost_upstream_state 2; log:\n{self.op.log_tail(15)}")
        st = parent_status(self.op)
        self.assertEqual(st["state"], "offline", st)
        self.assertFalse(st["forced_offline"], st)
        # It did talk to the parent before the outage: last contact is known.
        self.assertGreaterEqual(st["last_success_unix"], int(self.started) - 1, st)
        self.assertLessEqual(st["last_success_unix"], time.time() + 1, st)
        self.assertGreater(metric(self.op, "outpost_upstream_last_success_seconds", "parent"), 0)

    def offline_headers(self, case: str) -> None:
        for method in ("GET", "HEAD"):
            t0 = time.monotonic()
            r = self.get_manifest("e2e/app", "v1", method)
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 200, f"{case} {method}: {r.body[:200]!r}")
            self.assertLess(elapsed, FAST_MISS_S, f"{case} {method} of a cached tag took {elapsed:.1f}s")
            self.assertEqual(r.header("Docker-Content-Digest"), self.lay.top_digest)
            self.assertEqual(r.header("Outpost-Cache"), "offline", f"{case} {method}")
            age = r.header("Outpost-Tag-Age")
            self.assertIsNotNone(age, f"{case} {method}: no Outpost-Tag-Age")
            self.assertRegex(age, r"^\d+$")
            # Last confirmed before this outage (at least one tag_ttl ago), and
            # not before this test class started.
            self.assertGreaterEqual(int(age), 1, f"{case}: tag age {age}")
            self.assertLessEqual(int(age), time.time() - self.started + 2, f"{case}: tag age {age}")
            if method == "GET":
                self.assertEqual(r.body, self.lay.top_bytes)

    def cold_misses_fail_fast(self, case: str, parent_requests) -> None:
        """Misses answer at once and send nothing upstream, but for the
        half-open breaker's trial (issue #13): at most one miss per
        TRIAL_INTERVAL_S goes to the parent, and waits at most the probe
        deadline. GETs answer 503 "Parent Offline And Not Cached"; HEADs
        (a push's "do you have it?") answer 404 with Outpost-Cache: offline."""
        absent_blob = sha256_digest(b"never pushed anywhere " + case.encode())
        missing = [
            ("GET", f"/v2/e2e/absent-{case}/manifests/v1"),
            ("HEAD", f"/v2/e2e/absent-{case}/manifests/v1"),
            ("GET", f"/v2/e2e/app/manifests/{absent_blob}"),
            ("GET", f"/v2/e2e/app/blobs/{absent_blob}"),
            ("HEAD", f"/v2/e2e/app/blobs/{absent_blob}"),
        ]
        before = self.counters()["outpost_cache_offline_misses_total"]
        slow = 0
        t_all = time.monotonic()
        for method, path in missing:
            t0 = time.monotonic()
            r = http(method, self.op.url + path, headers={"Accept": ACCEPT_ALL_MANIFESTS},
                     timeout=PARENT_TIMEOUT_S + 10)
            elapsed = time.monotonic() - t0
            what = f"{case}: {method} {path}"
            if elapsed >= FAST_MISS_S:
                slow += 1  # the breaker's trial, held by a parent that does not answer
                self.assertLess(elapsed, TRIAL_S, f"{what} took {elapsed:.1f}s")
            if method == "HEAD":
                # containerd's push checks its tag with a HEAD first (issue #13)
                self.assertEqual(r.status, 404, f"{what}: {r.status}")
                self.assertEqual(r.header("Outpost-Cache"), "offline", what)
                continue
            self.assertEqual(r.status, 503, f"{what}: {r.status} {r.body[:300]!r}")
            # (a trial the parent answered with 503 relays that instead)
            self.assertIn(r.reason, ("Parent Offline And Not Cached", "Parent Unavailable"), what)
            code, message = oci_error(r)
            self.assertEqual(code, "UNAVAILABLE", f"{what}: {r.body[:300]!r}")
            self.assertIn("parent", message, what)
        trials_allowed = 1 + int((time.monotonic() - t_all) / TRIAL_INTERVAL_S)
        self.assertLessEqual(slow, trials_allowed, f"{case}: misses waiting on the parent")
        after = self.counters()["outpost_cache_offline_misses_total"]
        self.assertGreaterEqual(after - before, len(missing) - trials_allowed, "offline misses counter")
        self.assertEqual(parent_status(self.op)["_cache"].get("offline_misses"), after)
        sent = [ln for ln in parent_requests() if f"absent-{case}" in ln or absent_blob in ln]
        self.assertLessEqual(len(sent), trials_allowed, f"{case}: misses reached the parent while offline: {sent}")

    def offline_checks(self, case: str, parent_requests) -> None:
        self.wait_offline(case)
        self.offline_headers(case)
        self.cold_misses_fail_fast(case, parent_requests)
        # A second full pull, now that the state is offline: nothing waits at all.
        elapsed = self.pull_and_compare("e2e/app", self.lay)
        self.assertLess(elapsed, FAST_PULL_S, f"{case}: pull while offline took {elapsed:.1f}s")
        st = parent_status(self.op)
        self.assertEqual(st["_cache"].get("served_offline"),
                         metric(self.op, "outpost_cache_served_offline_total"))
        self.assertGreater(st["_cache"].get("served_offline", 0), 0)

    def wait_online(self, since: float) -> None:
        wait_until(lambda: upstream_state(self.op) == 0, RECOVERY_S,
                   message=lambda: f"outpost back online; log:\n{self.op.log_tail(15)}")
        st = parent_status(self.op)
        self.assertEqual(st["state"], "online", st)
        self.assertGreaterEqual(st["last_success_unix"], int(since), st)
        self.assertGreaterEqual(metric(self.op, "outpost_upstream_last_success_seconds", "parent"), int(since))

    # -- (a) connection refused
    def test_a_parent_refuses_connections(self):
        self.age_tags()
        mark = len(self.parent.requests())
        self.parent.stop()
        self.warm_pull_is_fast("refused")
        self.offline_checks("refused", lambda: [f"{m} {p}" for m, p, _ in self.parent.requests()[mark:]])
        t = time.time()
        self.parent.start()
        self.wait_online(t)

    # -- (b) accepts, never answers
    def test_b_parent_accepts_and_never_answers(self):
        self.age_tags()
        self.parent.stop()
        with HangingListener(self.parent.port) as hang:
            self.warm_pull_is_fast("hang")
            self.offline_checks("hang", hang.request_lines)
            # Outpost did reach the listener (and was held), so this really
            # was the "no answer" case, not a refused connection.
            self.assertGreaterEqual(hang.accepted, 1)
            self.assertTrue(any("/manifests/v1" in ln for ln in hang.request_lines()), hang.request_lines())
        t = time.time()
        self.parent.start()
        self.wait_online(t)
        r = self.get_manifest("e2e/app", "v1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Docker-Content-Digest"), self.lay.top_digest)

    # -- (c) 503 for everything
    def test_c_parent_answers_503(self):
        self.age_tags()
        self.parent.stop()
        with Always503Server(self.parent.port) as srv:
            self.warm_pull_is_fast("503")
            self.offline_checks("503", srv.seen)
            self.assertTrue(any(s.startswith("HEAD /v2/e2e/app/manifests/v1") for s in srv.seen()), srv.seen())
            self.assertTrue(any(s == "GET /v2/" for s in srv.seen()), f"no probe seen: {srv.seen()}")
        t = time.time()
        self.parent.start()
        self.wait_online(t)

    # -- manifests by digest while offline
    def test_d_offline_digest_answers_are_marked(self):
        """docs/architecture.md "Offline": cached tags *and digests* are
        served at once with Outpost-Cache: offline."""
        self.parent.stop()
        self.age_tags()
        r = self.get_manifest("e2e/app", "v1")   # refused -> degraded -> probe -> offline
        self.assertEqual(r.status, 200)
        self.wait_offline("digest")
        for im in self.lay.images:
            t0 = time.monotonic()
            r = self.get_manifest("e2e/app", im.manifest_digest)
            self.assertLess(time.monotonic() - t0, FAST_MISS_S)
            self.assertEqual(r.status, 200, r.body[:200])
            self.assertEqual(r.body, im.manifest)
            self.assertEqual(r.header("Outpost-Cache"), "offline",
                             f"GET manifest by digest while offline: headers {dict(r.headers)}")
        t = time.time()
        self.parent.start()
        self.wait_online(t)

    # -- a tag moved on the parent during the outage
    def test_e_tag_moved_during_outage_is_seen_after_recovery(self):
        self.age_tags()
        self.parent.stop()
        # Outpost notices: the stale tag is served from cache, unconfirmed.
        r = self.get_manifest("e2e/moving", "moving")
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertEqual(r.header("Docker-Content-Digest"), self.old.top_digest)
        self.wait_offline("moved")

        # Meanwhile the tag moves upstream: another registry process on the
        # parent's storage (Outpost cannot reach it), then gone again.
        side = PinnedRegistry(root=self.parent.root)
        try:
            side.start()
            self._push(self.new, side, "e2e/moving")
        finally:
            side.stop()
            side._cleanup()

        r = self.get_manifest("e2e/moving", "moving")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Docker-Content-Digest"), self.old.top_digest, "still offline: cached tag")
        self.assertEqual(r.header("Outpost-Cache"), "offline")

        t = time.time()
        self.parent.start()            # same port, same storage
        self.wait_online(t)

        # No restart of Outpost: the tag now resolves to the new image.
        r = self.get_manifest("e2e/moving", "moving")
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertEqual(r.header("Docker-Content-Digest"), self.new.top_digest)
        self.assertIsNone(r.header("Outpost-Cache"))
        self.assertEqual(r.body, self.new.top_bytes)
        self.pull_and_compare("e2e/moving", self.new)

    def test_g_revalidation_stuck_before_the_outage_does_not_outlive_recovery(self):
        """The parent stops answering mid-request and its connections stay
        open (a silent black hole: no FIN, no RST). Once the parent is back
        and Outpost says online, a tag request is revalidated for real; it
        must not keep waiting on a HEAD sent before the outage (which only
        ends at parent.timeout) nor get the stale tag marked offline."""
        self.age_tags()
        self.parent.stop()
        hang = HangingListener(self.parent.port)
        self.addCleanup(hang.close)
        r = self.get_manifest("e2e/stuck", "t")          # HEAD sent, held
        self.assertEqual(r.header("Outpost-Cache"), "offline")
        self.wait_offline("stuck")
        self.assertTrue(any("/v2/e2e/stuck/manifests/t" in ln for ln in hang.request_lines()))
        # The link returns; the held connections are never closed (black hole).
        hang.stopping = True
        hang.sock.close()
        hang.thread.join(5)
        side = PinnedRegistry(root=self.parent.root)
        try:
            side.start()
            self._push(self.stuck_new, side, "e2e/stuck")
        finally:
            side.stop()
            side._cleanup()
        t = time.time()
        self.parent.start()
        self.wait_online(t)
        self.age_tags()
        t0 = time.monotonic()
        r = self.get_manifest("e2e/stuck", "t")
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200)
        self.assertEqual(upstream_state(self.op), 0)
        self.assertEqual(
            (r.header("Docker-Content-Digest"), r.header("Outpost-Cache")), (self.stuck_new.top_digest, None),
            f"online again, but the tag answer waited {elapsed:.2f}s on a HEAD from before the outage "
            f"and served the stale tag (stale digest is {self.stuck_old.top_digest})")

    def test_f_status_shape(self):
        st = parent_status(self.op)
        for k in ("name", "url", "state", "forced_offline", "last_success_unix"):
            self.assertIn(k, st)
        self.assertEqual(st["url"].rstrip("/"), self.parent.url)
        for k in ("served_offline", "offline_misses"):
            self.assertIn(k, st["_cache"])
        text = http("GET", self.op.url + "/metrics").body.decode()
        self.assertIn("# TYPE outpost_upstream_state gauge", text)
        self.assertRegex(text, r'(?m)^outpost_upstream_state\{upstream="parent"\} 0$')
        self.assertRegex(text, r'(?m)^outpost_upstream_last_success_seconds\{upstream="parent"\} [1-9]\d*$')
        # (their increments are checked by the outage tests)
        self.assertRegex(text, r"(?m)^outpost_cache_served_offline_total \d+$")
        self.assertRegex(text, r"(?m)^outpost_cache_offline_misses_total \d+$")


class FreshTagWhileOffline(unittest.TestCase):
    """docs/architecture.md "Offline": while offline every cached tag is
    served with Outpost-Cache: offline, also one still inside tag_ttl."""

    def test_tag_within_ttl_is_marked_offline(self):
        with tempfile.TemporaryDirectory(prefix="offline-ttl-") as tmp:
            lay = make_oci_layout(os.path.join(tmp, "l"), tag="t", layers=[{"a.txt": b"ttl\n"}])
            reg = PinnedRegistry()
            self.addCleanup(reg._cleanup)
            self.addCleanup(reg.stop)
            reg.start()
            skopeo_copy(lay.ref, f"docker://{reg.hostport}/x/y:t", "--preserve-digests")
            with Outpost(config={"parent": {"url": reg.url, "timeout": f"{PARENT_TIMEOUT_S}s"},
                                 "cache": {"tag_ttl": "1h"}}) as op:
                a = {"Accept": ACCEPT_ALL_MANIFESTS}
                r = http("GET", op.url + "/v2/x/y/manifests/t", headers=a)
                self.assertEqual(r.header("Docker-Content-Digest"), lay.top_digest)
                self.assertIsNone(r.header("Outpost-Cache"))
                reg.stop()
                r = http("GET", op.url + "/v2/x/y/manifests/absent", headers=a)   # notices the outage
                self.assertEqual(r.status, 503)
                wait_until(lambda: upstream_state(op) == 2, scaled(10), message="outpost_upstream_state 2")
                r = http("GET", op.url + "/v2/x/y/manifests/t", headers=a)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Docker-Content-Digest"), lay.top_digest)
                self.assertEqual(r.header("Outpost-Cache"), "offline",
                                 f"tag confirmed < tag_ttl ago, parent offline: {dict(r.headers)}")
                self.assertRegex(r.header("Outpost-Tag-Age") or "", r"^\d+$")


class ShutdownWhileParentHangs(unittest.TestCase):
    """SIGTERM while upstream requests hang on a silent parent (a tag
    revalidation HEAD and the probe): a clean, prompt exit, and no
    sanitizer report (their callbacks must not outlive the cache)."""

    def test_sigterm_with_requests_hung_on_the_parent(self):
        with tempfile.TemporaryDirectory(prefix="offline-term-") as tmp:
            lay = make_oci_layout(os.path.join(tmp, "l"), tag="t", layers=[{"a.txt": b"term\n"}])
            reg = PinnedRegistry()
            self.addCleanup(reg._cleanup)
            self.addCleanup(reg.stop)
            reg.start()
            skopeo_copy(lay.ref, f"docker://{reg.hostport}/x/y:t", "--preserve-digests")
            with Outpost(config={"parent": {"url": reg.url, "timeout": f"{PARENT_TIMEOUT_S}s"},
                                 "cache": {"tag_ttl": "1s", "revalidate_wait": "1s"}}) as op:
                a = {"Accept": ACCEPT_ALL_MANIFESTS}
                t_warm = time.monotonic()
                self.assertEqual(http("GET", op.url + "/v2/x/y/manifests/t", headers=a).status, 200)
                reg.stop()
                hang = HangingListener(reg.port)
                self.addCleanup(hang.close)
                time.sleep(max(0.0, TAG_TTL_S + 0.2 - (time.monotonic() - t_warm)))  # tag goes stale
                r = http("GET", op.url + "/v2/x/y/manifests/t", headers=a)
                self.assertEqual(r.header("Outpost-Cache"), "offline")
                wait_until(lambda: any("/manifests/t" in ln for ln in hang.request_lines()), 5,
                           message="the revalidation HEAD held by the silent parent")
                t0 = time.monotonic()
                op.stop()            # SIGTERM; asserts exit 0 and no sanitizer report
                self.assertLess(time.monotonic() - t0, scaled(10), "exit took too long")


class ForcedOffline(unittest.TestCase):
    """parent.offline = true: an air-gapped Outpost fed by pushes."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="offline-forced-")
        self.trap = HangingListener()
        self.addCleanup(self._tmp.cleanup)
        self.addCleanup(self.trap.close)
        self.lay = make_oci_layout(os.path.join(self._tmp.name, "img"), tag="v1",
                                   layers=[{"etc/site": b"air-gapped\n"}, random_layer(128 * 1024, seed=53)],
                                   platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])

    def outpost(self) -> Outpost:
        return Outpost(config={"parent": {"url": f"http://127.0.0.1:{self.trap.port}", "offline": True,
                                          "timeout": f"{PARENT_TIMEOUT_S}s"},
                               "cache": {"tag_ttl": "1s", "revalidate_wait": "1s"}})

    def push_raw(self, op: Outpost, repo: str) -> None:
        """The image pushed with plain POST/PUT (no HEAD checks first)."""
        for dg, data in self.lay.blobs.items():
            if dg == self.lay.top_digest or any(dg == im.manifest_digest for im in self.lay.images):
                continue
            push_blob(op.url, repo, data)
        for im in self.lay.images:
            r = http("PUT", f"{op.url}/v2/{repo}/manifests/{im.manifest_digest}", body=im.manifest,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            self.assertEqual(r.status, 201, r.body[:300])
        r = http("PUT", f"{op.url}/v2/{repo}/manifests/{self.lay.tag}", body=self.lay.top_bytes,
                 headers={"Content-Type": self.lay.top_media_type})
        self.assertEqual(r.status, 201, r.body[:300])

    def check_serving(self, op: Outpost, repo: str) -> None:
        self.assertEqual(upstream_state(op), 2)
        st = parent_status(op)
        self.assertEqual(st["state"], "offline")
        self.assertTrue(st["forced_offline"])

        with tempfile.TemporaryDirectory(prefix="offline-forced-pull-") as d:
            out = os.path.join(d, "out")
            t0 = time.monotonic()
            skopeo_copy(f"docker://{op.host}:{op.port}/{repo}:v1", f"oci:{out}:v1", "--all",
                        "--preserve-digests", timeout=60)
            self.assertLess(time.monotonic() - t0, FAST_PULL_S)
            with open(os.path.join(out, "index.json")) as f:
                idx = json.load(f)
            self.assertEqual([m["digest"] for m in idx["manifests"]], [self.lay.top_digest])
            for dg in self.lay.blobs:
                self.assertTrue(os.path.exists(os.path.join(out, "blobs", "sha256", dg.split(":", 1)[1])), dg)

        r = http("GET", f"{op.url}/v2/{repo}/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Docker-Content-Digest"), self.lay.top_digest)
        self.assertEqual(r.header("Outpost-Cache"), "offline")

        absent = sha256_digest(b"not here")
        for method, path in (("GET", f"/v2/{repo}/manifests/nope"), ("GET", f"/v2/other/thing/manifests/v1"),
                             ("GET", f"/v2/{repo}/blobs/{absent}"), ("GET", f"/v2/{repo}/manifests/{absent}")):
            t0 = time.monotonic()
            r = http(method, op.url + path, headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertLess(time.monotonic() - t0, FAST_MISS_S, path)
            self.assertEqual(r.status, 503, f"{path}: {r.status} {r.body[:200]!r}")
            code, message = oci_error(r)
            self.assertEqual(code, "UNAVAILABLE", path)
            self.assertIn("unreachable", message, path)
        self.assertGreaterEqual(metric(op, "outpost_cache_offline_misses_total"), 4)

    def test_serves_pushed_content_and_never_contacts_parent(self):
        with self.outpost() as op:
            self.push_raw(op, "site/app")
            self.check_serving(op, "site/app")
            # Nothing ever reached the parent's port (no probe, no request).
            self.assertEqual(upstream_state(op), 2)
        self.assertEqual(self.trap.accepted, 0, self.trap.request_lines())

    def test_skopeo_push_to_forced_offline_outpost(self):
        """A real client's push (skopeo HEADs each blob first) works while the
        parent is out of reach."""
        with self.outpost() as op:
            skopeo_copy(self.lay.ref, f"docker://{op.host}:{op.port}/site/pushed:v1", "--all",
                        "--preserve-digests", timeout=120)
            self.check_serving(op, "site/pushed")
        self.assertEqual(self.trap.accepted, 0, self.trap.request_lines())


if __name__ == "__main__":
    unittest.main()
