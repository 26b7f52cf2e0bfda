"""A parent that lies or hangs up (faulty_upstream.FakeRegistry):

- wrong bytes for a blob (right length, one byte flipped; with a
  Content-Length and chunked),
- a connection dropped halfway through a blob,
- a manifest whose bytes do not match the digest it is served under.

Every client sees a failure (an error status, or a body cut short: the
connection closes before Content-Length / the last chunk), never a
complete wrong body; nothing is cached (the next request fetches again,
a HEAD with the blob gone upstream says 404); once the parent is fixed the
same request works and is cached."""

import http.client as httpclient
import tempfile
import threading
import unittest
import urllib.parse
from dataclasses import dataclass

from faulty_upstream import FakeRegistry
from harness import (ACCEPT_ALL_MANIFESTS, Outpost, http, make_oci_layout, random_layer, scaled,
                     sha256_digest, wait_until)

REPO = "e2e/faulty"


@dataclass
class Got:
    status: int
    declared: int | None   # Content-Length, None when chunked
    body: bytes
    complete: bool         # the framing said the body was whole


def fetch(url: str, method: str = "GET", timeout: float = 30.0) -> Got:
    """One request; a body cut short is reported (complete=False), not raised."""
    p = urllib.parse.urlsplit(url)
    conn = httpclient.HTTPConnection(p.hostname, p.port, timeout=scaled(timeout))
    try:
        conn.request(method, p.path + ("?" + p.query if p.query else ""))
        r = conn.getresponse()
        cl = r.getheader("Content-Length")
        try:
            body = r.read()
            complete = True
        except httpclient.IncompleteRead as e:
            body, complete = e.partial, False
        except (ConnectionError, OSError):
            body, complete = b"", False
        return Got(r.status, int(cl) if cl is not None else None, body, complete)
    finally:
        conn.close()


class FaultyParent(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="pull-faults-")
        cls.big = random_layer(4 * 1024 * 1024, seed=11, compress=False)
        cls.lay = make_oci_layout(cls._tmp.name + "/src", layers=[cls.big, {"a.txt": b"small layer\n"}])
        cls.big_d = sha256_digest(cls.big)
        cls.small_d = cls.lay.images[0].layer_digests[1]

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def setUp(self):
        self.fake = FakeRegistry().start()
        self.addCleanup(self.fake.stop)
        self.fake.add_layout(REPO, self.lay)
        self.op = Outpost(config={"parent": {"url": self.fake.url, "timeout": "10s", "connect_timeout": "2s"},
                                  "cache": {"tag_ttl": "1h"}})
        self.op.__enter__()
        self.addCleanup(self._stop_outpost)

    def _stop_outpost(self):
        self.op.__exit__(None, None, None)

    def blob_url(self, d: str) -> str:
        return f"{self.op.url}/v2/{REPO}/blobs/{d}"

    def gets(self, d: str) -> int:
        return self.fake.count("GET", f"/v2/{REPO}/blobs/{d}")

    def assert_failed(self, g: Got, d: str, data: bytes):
        """An error status, or a 200 whose body is visibly cut short."""
        if g.status == 200:
            self.assertFalse(g.complete, f"a complete 200 body for a blob the parent broke "
                                         f"({len(g.body)} bytes, {'right' if g.body == data else 'WRONG'} content)")
            if g.declared is not None:  # Content-Length: at least the last byte is held back
                self.assertEqual(g.declared, len(data))
                self.assertLess(len(g.body), len(data))
            # chunked: every byte may have come, but never the terminating chunk
        else:
            self.assertGreaterEqual(g.status, 500, g.body[:300])

    def assert_not_cached_then_recovers(self, d: str, data: bytes):
        # not cached: with the blob gone upstream a HEAD says 404 (it was not kept)
        self.fake.faults[d] = "missing"
        r = http("HEAD", self.blob_url(d))
        self.assertEqual(r.status, 404, "a failed fill left the blob in the cache")
        # parent fixed: a new fetch, the right bytes, and now it is cached
        del self.fake.faults[d]
        before = self.gets(d)
        g = fetch(self.blob_url(d))
        self.assertEqual((g.status, g.complete, len(g.body)), (200, True, len(data)))
        self.assertEqual(sha256_digest(g.body), d)
        self.assertEqual(self.gets(d), before + 1, "the fixed parent was not asked again")
        self.fake.faults[d] = "missing"
        g = fetch(self.blob_url(d))
        self.assertEqual((g.status, sha256_digest(g.body)), (200, d), "a verified fill was not kept")
        self.assertEqual(self.gets(d), before + 1)

    def check_fault(self, fault: str, d: str, data: bytes, clients: int = 1):
        self.fake.faults[d] = fault
        results: list = [None] * clients

        def one(i):
            results[i] = fetch(self.blob_url(d))

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=scaled(60))
            self.assertFalse(t.is_alive(), "a client hung on a failed fill")
        for g in results:
            self.assert_failed(g, d, data)
        self.assertGreaterEqual(self.gets(d), 1)
        self.op.wait_log(r'msg="fill failed" digest=' + d)
        # the failed fill is gone: the next request fetches again (and fails again)
        before = self.gets(d)
        self.assert_failed(fetch(self.blob_url(d)), d, data)
        self.assertEqual(self.gets(d), before + 1, "a failed fill answered from somewhere other than the parent")
        self.assert_not_cached_then_recovers(d, data)

    # ------------------------------------------------------------------
    def test_wrong_bytes_big_blob(self):
        self.check_fault("corrupt", self.big_d, self.big, clients=4)

    def test_wrong_bytes_small_blob(self):
        self.check_fault("corrupt", self.small_d, self.lay.blobs[self.small_d])

    def test_wrong_bytes_chunked(self):
        self.check_fault("chunked-corrupt", self.big_d, self.big, clients=3)

    def test_connection_dropped_halfway(self):
        self.check_fault("truncate", self.big_d, self.big, clients=4)

    def test_connection_dropped_halfway_chunked(self):
        self.check_fault("chunked-truncate", self.big_d, self.big, clients=2)

    def test_good_chunked_blob(self):
        self.fake.faults[self.big_d] = "chunked"
        g = fetch(self.blob_url(self.big_d))
        self.assertEqual((g.status, g.complete, sha256_digest(g.body)), (200, True, self.big_d))
        del self.fake.faults[self.big_d]
        self.fake.faults[self.big_d] = "missing"
        g = fetch(self.blob_url(self.big_d))
        self.assertEqual((g.status, sha256_digest(g.body)), (200, self.big_d))
        self.assertEqual(self.gets(self.big_d), 1)

    def test_corrupt_manifest_is_refused_and_not_cached(self):
        im = self.lay.images[0]
        acc = {"Accept": ACCEPT_ALL_MANIFESTS}
        self.fake.manifest_faults[im.manifest_digest] = "corrupt"
        for ref in (self.lay.tag, im.manifest_digest):
            r = http("GET", f"{self.op.url}/v2/{REPO}/manifests/{ref}", headers=acc)
            self.assertGreaterEqual(r.status, 500, f"{ref}: {r.status} {r.body[:200]!r}")
            self.assertNotEqual(sha256_digest(r.body), im.manifest_digest)
        self.fake.manifest_faults.clear()
        for ref in (self.lay.tag, im.manifest_digest):
            r = http("GET", f"{self.op.url}/v2/{REPO}/manifests/{ref}", headers=acc)
            self.assertEqual((r.status, r.body), (200, im.manifest), ref)

    def test_parent_missing_blob_is_404(self):
        self.fake.faults[self.small_d] = "missing"
        self.assertEqual(fetch(self.blob_url(self.small_d)).status, 404)
        self.assertEqual(http("HEAD", self.blob_url(self.small_d)).status, 404)

    def test_parent_500_is_an_error_and_outpost_keeps_serving(self):
        self.fake.faults[self.small_d] = "error500"
        heads = self.fake.count("HEAD")
        for _ in range(3):
            g = fetch(self.blob_url(self.small_d))
            self.assertGreaterEqual(g.status, 500)
            # ReadWrite: a HEAD is a pushing client's "do you have it?",
            # answered from the store alone (issue #13)
            r = http("HEAD", self.blob_url(self.small_d))
            self.assertEqual(r.status, 404)
        self.assertEqual(self.fake.count("HEAD"), heads, "a blob HEAD miss was forwarded to the parent")
        del self.fake.faults[self.small_d]
        # repeated 5xx may have marked the parent offline; its probe (GET /v2/
        # answers) brings it back, and then the blob comes through
        g = wait_until(lambda: (lambda g: g if g.status == 200 else None)(fetch(self.blob_url(self.small_d))),
                       timeout=15, message="the blob once the parent is fixed")
        self.assertEqual((g.status, sha256_digest(g.body)), (200, self.small_d))

    def test_client_leaving_mid_fill_does_not_stop_it(self):
        d, data = self.big_d, self.big
        gate = threading.Event()
        self.fake.gates[d] = gate
        self.addCleanup(gate.set)
        p = urllib.parse.urlsplit(self.blob_url(d))
        conn = httpclient.HTTPConnection(p.hostname, p.port, timeout=scaled(30))
        conn.request("GET", p.path)
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        first = r.read(64 * 1024)
        self.assertEqual(first, data[:64 * 1024])
        conn.close()  # the only client leaves while the parent is still sending
        gate.set()
        self.op.wait_log(r'msg="fill committed" digest=' + d, timeout=30)
        self.fake.faults[d] = "missing"
        g = fetch(self.blob_url(d))
        self.assertEqual((g.status, g.complete, sha256_digest(g.body)), (200, True, d))
        self.assertEqual(self.gets(d), 1)

    def test_late_joiner_gets_the_whole_blob(self):
        """B asks while the parent is stuck halfway through A's fill: B gets
        its response head and the bytes so far at once (it joined the fill,
        from byte 0), and both get the whole blob once the parent goes on."""
        d, data = self.big_d, self.big
        gate = threading.Event()
        self.fake.gates[d] = gate
        self.addCleanup(gate.set)
        p = urllib.parse.urlsplit(self.blob_url(d))
        resps, conns = [], []
        for _name in ("a", "b"):
            conn = httpclient.HTTPConnection(p.hostname, p.port, timeout=scaled(30))
            conn.request("GET", p.path)
            r = conn.getresponse()  # arrives while the parent is still gated
            self.assertEqual((r.status, r.getheader("Content-Length")), (200, str(len(data))))
            self.assertEqual(r.read(1024), data[:1024])
            conns.append(conn)
            resps.append(r)
        self.assertEqual(self.gets(d), 1)
        gate.set()
        for r, conn in zip(resps, conns):
            rest = r.read()
            conn.close()
            self.assertEqual(sha256_digest(data[:1024] + rest), d)
        self.assertEqual(self.gets(d), 1)

    def test_head_during_a_fill_gives_the_size(self):
        """A HEAD for a blob whose fill is in flight answers 200 with the
        blob's Content-Length (distribution-spec: HEAD tells the size), also
        when the parent streams the fill chunked (no Content-Length)."""
        from harness import RawConn
        for fault in (None, "chunked"):
            with self.subTest(parent=fault or "content-length"):
                d, data = self.big_d, self.big
                # a fresh Outpost per case: the blob must not be cached yet
                op = Outpost(config={"parent": {"url": self.fake.url, "timeout": "10s"}})
                with op:
                    gate = threading.Event()
                    self.fake.gates[d] = gate
                    if fault:
                        self.fake.faults[d] = fault
                    try:
                        p = urllib.parse.urlsplit(f"{op.url}/v2/{REPO}/blobs/{d}")
                        conn = httpclient.HTTPConnection(p.hostname, p.port, timeout=scaled(30))
                        conn.request("GET", p.path)
                        r = conn.getresponse()  # the fill is in flight, the parent gated halfway
                        self.assertEqual(r.status, 200)
                        with RawConn(op.port) as rc:
                            rc.send(f"HEAD {p.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                            h = rc.read_response(head=True, timeout=10)
                        self.assertEqual(h.status, 200)
                        self.assertEqual(h.header("Docker-Content-Digest"), d)
                        self.assertEqual(h.header("Content-Length"), str(len(data)),
                                         f"HEAD during a fill: headers {h.headers}")
                    finally:
                        gate.set()
                        self.fake.gates.pop(d, None)
                        self.fake.faults.pop(d, None)
                    self.assertEqual(sha256_digest(r.read()), d)
                    conn.close()

    def test_concurrent_manifest_requests_coalesce(self):
        im = self.lay.images[0]
        gate = threading.Event()
        self.fake.gates[im.manifest_digest] = gate
        self.addCleanup(gate.set)
        results: list = [None] * 5

        def client(i):
            results[i] = http("GET", f"{self.op.url}/v2/{REPO}/manifests/{self.lay.tag}",
                              headers={"Accept": ACCEPT_ALL_MANIFESTS}, timeout=30)

        threads = [threading.Thread(target=client, args=(0,), daemon=True)]
        threads[0].start()
        wait_until(lambda: self.fake.count("GET", f"/v2/{REPO}/manifests/{self.lay.tag}") == 1,
                   message="the first manifest fetch to reach the parent")
        for i in range(1, 5):
            threads.append(threading.Thread(target=client, args=(i,), daemon=True))
            threads[-1].start()
        gate.set()
        for t in threads:
            t.join(timeout=scaled(60))
            self.assertFalse(t.is_alive())
        for r in results:
            self.assertEqual((r.status, r.body), (200, im.manifest))
        self.assertEqual(self.fake.count("GET", f"/v2/{REPO}/manifests/.*"), 1)

    def test_sigterm_right_after_a_failed_fill_exits_cleanly(self):
        """A failed fill drops its upload session on the work pool; a
        shutdown right after must wait for that job, not free the store
        under it (seen as heap-use-after-free in Uploads::forget under ASan,
        'terminate called after throwing std::length_error' without)."""
        self.fake.faults[self.small_d] = "truncate"
        for i in range(4):
            op = Outpost(config={"parent": {"url": self.fake.url, "timeout": "10s"}})
            with op:
                g = fetch(f"{op.url}/v2/{REPO}/blobs/{self.small_d}")
                self.assert_failed(g, self.small_d, self.lay.blobs[self.small_d])
                op.stop()  # SIGTERM now; asserts exit status 0 and no sanitizer report


if __name__ == "__main__":
    unittest.main()
