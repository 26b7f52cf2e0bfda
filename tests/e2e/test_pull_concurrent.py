"""One upstream fetch per blob: 50 clients GET the same uncached 64 MiB
layer through Outpost at once (released together by a barrier). The
parent (docker-registry) sees exactly one GET of that blob, every client
gets all the right bytes, and Outpost's memory does not grow with
clients x blob size (bodies are teed from the session file)."""

import hashlib
import http.client as httpclient
import threading
import unittest

from harness import (SANITIZED, DockerRegistry, Outpost, http, peak_rss_kb, push_blob, random_layer,
                     registry_mark, registry_requests_between, scaled, sha256_digest)

SIZE = 64 * 1024 * 1024
CLIENTS = 50
REPO = "e2e/big"


def fetch_and_hash(port: int, path: str, barrier: threading.Barrier, out: list, i: int) -> None:
    h = hashlib.sha256()
    n = 0
    status = None
    err = None
    try:
        conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=scaled(60))
        conn.connect()
        barrier.wait(timeout=scaled(30))
        conn.request("GET", path)
        r = conn.getresponse()
        status = r.status
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        conn.close()
    except Exception as e:  # reported per client below
        err = repr(e)
    out[i] = (status, n, "sha256:" + h.hexdigest(), err)


class ConcurrentFill(unittest.TestCase):
    def test_fifty_clients_one_upstream_get(self):
        layer = random_layer(SIZE, seed=64, compress=False)
        with DockerRegistry() as reg:
            d = push_blob(reg.url, REPO, layer)
            size = len(layer)
            del layer
            with Outpost(config={"parent": {"url": reg.url, "timeout": "30s"}}) as op:
                m0 = registry_mark(reg)
                barrier = threading.Barrier(CLIENTS)
                results: list = [None] * CLIENTS
                threads = [threading.Thread(target=fetch_and_hash, daemon=True,
                                            args=(op.port, f"/v2/{REPO}/blobs/{d}", barrier, results, i))
                           for i in range(CLIENTS)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=scaled(120))
                    self.assertFalse(t.is_alive(), "a client did not finish in time")
                bad = [(i, r) for i, r in enumerate(results) if r != (200, size, d, None)]
                self.assertEqual(bad, [], f"clients with a wrong answer (want 200, {size}, {d})")

                m1 = registry_mark(reg)
                seen = registry_requests_between(reg, m0, m1)
                gets = [x for x in seen if x[0] == "GET" and x[1] == f"/v2/{REPO}/blobs/{d}"]
                self.assertEqual(len(gets), 1, f"parent requests during the fill: {seen}")
                self.assertEqual([x for x in seen if x[1] != f"/v2/{REPO}/blobs/{d}"], [], seen)

                # cached now: a late client is served locally, the parent sees nothing
                r = http("GET", f"{op.url}/v2/{REPO}/blobs/{d}", timeout=60)
                self.assertEqual((r.status, sha256_digest(r.body)), (200, d))
                self.assertEqual(registry_requests_between(reg, m1, registry_mark(reg)), [])

                if not SANITIZED:
                    peak = peak_rss_kb(op.pid)
                    self.assertLess(peak, 256 * 1024, f"outpost peak RSS {peak} KiB for {CLIENTS} x 64 MiB")
                op.wait_log(r'msg="fill committed"')
                self.assertEqual(op.log_text().count('msg="fill started"'), 1, op.log_tail(40))


if __name__ == "__main__":
    unittest.main()
