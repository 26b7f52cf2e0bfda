"""How Outpost treats its parent (issue #13), seen from outside with a
recording parent (faulty_upstream.FakeRegistry):

- content pushed here is authoritative here: a real push (skopeo HEADs each
  blob first) and pulling it back send the parent nothing, and a blob held
  for one repository is linked into another, not fetched again;
- the parent coming back is seen within about 3 s of it answering (the
  half-open breaker's trial requests, probes capped at 3 s), not after a
  probe backoff of up to 30 s;
- an offline miss names its reason in the status line (Go clients print it)
  and skopeo shows it; a manifest HEAD miss is 404 so `ctr push` goes on;
- a parent's 429 reaches the client as 429 with its Retry-After, and never
  marks the parent offline;
- containerd's override_path (/v2/docker.io/library/x/...?ns=docker.io)
  asks the upstream for library/x, not docker.io/library/x.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import unittest

from faulty_upstream import FakeRegistry
from harness import (ACCEPT_ALL_MANIFESTS, Outpost, free_port, http, make_oci_layout, random_layer,
                     scaled, sha256_digest, skopeo_copy, wait_until)

OFFLINE_REASON = "Parent Offline And Not Cached"


def parent_state(op: Outpost) -> str:
    j = http("GET", op.url + "/outpost/status").json()
    return j["upstreams"][0]["state"]


class ParentConduct(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="parent-conduct-")
        cls.lay = make_oci_layout(cls._tmp.name + "/img", layers=[random_layer(200_000, seed=131)])

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_push_then_pull_back_asks_the_parent_nothing(self):
        with FakeRegistry() as fake, \
                Outpost(config={"parent": {"url": fake.url, "timeout": "5s"},
                                "cache": {"tag_ttl": "0s"}}) as op:
            dst = f"docker://{op.host}:{op.port}/site/app:v1"
            skopeo_copy(self.lay.ref, dst, "--preserve-digests", timeout=120)
            # tag_ttl 0: a cached tag would be revalidated on every pull
            out = self._tmp.name + "/back"
            for i in range(2):
                skopeo_copy(dst, f"oci:{out}{i}:v1", timeout=120)
            r = http("GET", op.url + "/v2/site/app/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r.status, r.header("Docker-Content-Digest")), (200, self.lay.top_digest))
            asked = [f"{s.method} {s.path}" for s in fake.requests() if s.path not in ("/v2/", "/v2")]
            self.assertEqual(asked, [], "pushed content caused parent traffic")

    def test_blob_held_for_another_repository_is_linked_not_refetched(self):
        with FakeRegistry() as fake, Outpost(config={"parent": {"url": fake.url, "timeout": "5s"}}) as op:
            skopeo_copy(self.lay.ref, f"docker://{op.host}:{op.port}/site/app:v1", "--preserve-digests",
                        timeout=120)
            layer = self.lay.images[0].layer_digests[0]
            fake.add_blob(self.lay.blobs[layer])  # the parent has it too: it must not be asked
            for repo in ("site/other", "site/other"):
                g = http("GET", f"{op.url}/v2/{repo}/blobs/{layer}")
                self.assertEqual((g.status, sha256_digest(g.body)), (200, layer))
            self.assertEqual(fake.count("GET", f"/v2/site/other/blobs/{layer}"), 0)

    def offline_outpost(self, port: int) -> Outpost:
        return Outpost(config={"parent": {"url": f"http://127.0.0.1:{port}", "timeout": "2s",
                                          "connect_timeout": "1s"}})

    def go_offline(self, op: Outpost, miss: str) -> None:
        http("GET", miss)  # refused: failures open the breaker
        wait_until(lambda: parent_state(op) == "offline", 10, message="parent marked offline")

    def test_offline_misses_explain_themselves(self):
        with self.offline_outpost(free_port()) as op:
            miss = f"{op.url}/v2/e2e/app/manifests/v1"
            self.go_offline(op, miss)
            r = http("GET", miss)
            self.assertEqual((r.status, r.reason), (503, OFFLINE_REASON))
            # ctr push checks its tag with a HEAD first: "not here", not 503
            h = http("HEAD", miss)
            self.assertEqual((h.status, h.header("Outpost-Cache")), (404, "offline"))
            # skopeo shows the reason phrase (the JSON body it does not print)
            p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                f"docker://{op.host}:{op.port}/e2e/app:v1"],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(OFFLINE_REASON, p.stderr, p.stderr)

    def test_parent_back_within_3s(self):
        port = free_port()
        with self.offline_outpost(port) as op:
            miss = f"{op.url}/v2/e2e/app/manifests/v1"
            self.go_offline(op, miss)
            # Offline for a while (probes back off) while clients keep asking.
            # (before the fix: probes 1, 3, 7 and 15 s after opening; the parent
            # returns at about 8 s)
            t_end = time.monotonic() + 8.0
            while time.monotonic() < t_end:
                self.assertEqual(http("GET", miss).status, 503)
                time.sleep(0.2)  # a client's pace, not synchronisation
            fake = FakeRegistry(port=port)  # the parent, back at its address
            fake.add_manifest("e2e/app", json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + "a" * 64, "size": 2}, "layers": []}).encode(),
                "application/vnd.oci.image.manifest.v1+json", tag="v1")
            t0 = time.monotonic()
            with fake:
                wait_until(lambda: http("GET", miss, headers={"Accept": ACCEPT_ALL_MANIFESTS}).status == 200,
                           40, interval=0.1, message="a miss served once the parent is back")
                took = time.monotonic() - t0
                # Before issue #13: misses refused until a probe, backed off to ~8 s by now.
                self.assertLess(took, scaled(3.5), f"the parent was back {took:.1f}s before Outpost saw it")

    def test_parent_and_upstream_on_one_origin_learn_an_outage_once(self):
        from test_offline import HangingListener
        with HangingListener() as hang:
            url = f"http://127.0.0.1:{hang.port}"
            with Outpost(config={"parent": {"url": url, "timeout": "2s", "connect_timeout": "1s"},
                                 "upstream": [{"name": "mirror", "url": url, "timeout": "2s",
                                               "connect_timeout": "1s"}]}) as op:
                http("GET", f"{op.url}/v2/e2e/app/manifests/v1", timeout=30)  # waits one timeout
                wait_until(lambda: parent_state(op) == "offline", 20, message="parent marked offline")
                t0 = time.monotonic()
                r = http("GET", f"{op.url}/v2/mirror/e2e/app/manifests/v1", timeout=30)
                took = time.monotonic() - t0
                self.assertEqual(r.status, 503)
                # Before issue #13 the mirror's own health was still online: it waited 2 s.
                self.assertLess(took, scaled(1.0), f"the mirror's miss waited {took:.1f}s")
                states = {u["name"]: u["state"] for u in http("GET", op.url + "/outpost/status").json()["upstreams"]}
                self.assertEqual(states, {"parent": "offline", "mirror": "offline"})

    def test_429_is_relayed_with_retry_after_and_keeps_the_parent_online(self):
        with FakeRegistry() as fake, Outpost(config={"parent": {"url": fake.url, "timeout": "5s"}}) as op:
            d = fake.add_blob(b"busy blob")
            fake.faults[d] = "ratelimit"
            for _ in range(5):
                r = http("GET", f"{op.url}/v2/e2e/app/blobs/{d}")
                self.assertEqual((r.status, r.header("Retry-After")), (429, "11"))
                self.assertIn(b"TOOMANYREQUESTS", r.body)
            self.assertEqual(parent_state(op), "online")
            del fake.faults[d]
            g = http("GET", f"{op.url}/v2/e2e/app/blobs/{d}")
            self.assertEqual((g.status, g.body), (200, b"busy blob"))

    def test_override_path_ns_prefix_is_not_sent_upstream(self):
        with FakeRegistry() as fake, \
                Outpost(config={"upstream": [{"name": "docker.io", "url": fake.url, "timeout": "5s"}]}) as op:
            body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": "sha256:" + "b" * 64, "size": 2}, "layers": []}).encode()
            d = fake.add_manifest("library/alpine", body, "application/vnd.oci.image.manifest.v1+json", tag="3")
            r = http("GET", f"{op.url}/v2/docker.io/library/alpine/manifests/3?ns=docker.io",
                     headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r.status, r.header("Docker-Content-Digest")), (200, d))
            paths = [s.path for s in fake.requests() if "/manifests/" in s.path]
            self.assertEqual(paths, ["/v2/library/alpine/manifests/3"])


if __name__ == "__main__":
    unittest.main()
