"""The connected-registry hierarchy (issue #15, "What must be shown", first
point), with real processes on 127.0.0.1:

    cloud  Debian docker-registry (its access and error logs are read)
      L5   Outpost ReadWrite, parent = cloud, window closed
      L4   Outpost ReadWrite, parent = L5,    window closed
      L3   Outpost ReadOnly,  parent = L4

- A pull at L3 of an image held only in the cloud works (L3 -> L4 -> L5 ->
  cloud, on-demand pull-through outside windows: pull_through = "always").
- A multi-arch image pushed at L4 with skopeo (plus a signature of its
  index, an OCI 1.1 referrer) is served at L4 at once and
  moves nowhere while the windows are closed; `outpost sync now --wait` on
  L4 puts it at L5, the same on L5 puts it in the cloud, with identical
  digests (queried straight at each registry; the signature through L5's
  referrers API, by digest in the cloud, which has no referrers API). The cloud saw no write that
  failed, none for a missing blob or manifest (the replay order held).
- A push at L3 (ReadOnly) is refused with an OCI error.
- An Outpost configured ReadWrite under L3 (ReadOnly) exits 78 at start
  with one line naming ReadOnly; one whose ReadOnly parent was unreachable
  at start blocks its replay with the reason in /outpost/status.
- /v2/ answers carry Outpost-Mode.

The "windows closed" schedule is 00:00 on 1 January: no test runs then.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import unittest

from harness import (OCI_INDEX, DockerRegistry, Outpost, free_port, http, make_oci_layout, push_layout,
                     random_layer, skopeo_copy, wait_until)
from registry_helpers import Client, oci_error_codes
from sync_helpers import (CLOSED, PinnedOutpost, assert_registry_holds, manifest_digest, metric,
                          pull_layout, registry_write_failures, requires_sync, sync_config, sync_now,
                          sync_status, push_referrer, referrers, WRITE_METHODS)
from harness import registry_mark, registry_requests_between

EXIT_CONFIG = 78   # EX_CONFIG: a ReadWrite Outpost under a ReadOnly parent


@requires_sync
class ModeHeader(unittest.TestCase):
    def test_v2_carries_outpost_mode(self):
        for mode in ("ReadWrite", "ReadOnly"):
            with self.subTest(mode=mode), Outpost(config=sync_config(None, mode)) as op:
                r = http("GET", op.url + "/v2/")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Outpost-Mode"), mode)


@requires_sync
class Chain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="sync-chain-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        tmp = cls._tmp.name
        cls.tmp = tmp
        # held only in the cloud
        cls.base = make_oci_layout(os.path.join(tmp, "base"), tag="1",
                                   layers=[{"etc/os-release": b"cloud base\n"}, random_layer(96 * 1024, seed=151)],
                                   platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        # pushed at L4
        cls.app = make_oci_layout(os.path.join(tmp, "app"), tag="1",
                                  layers=[{"app/run": b"#!/bin/sh\necho site app\n"},
                                          random_layer(256 * 1024, seed=152)],
                                  platforms=[("linux", "amd64"), ("linux", "arm64", "v8"), ("linux", "arm", "v7")])
        cls.cloud = DockerRegistry().__enter__()
        cls.addClassCleanup(cls.cloud.__exit__, None, None, None)
        push_layout(cls.base, cls.cloud.hostport, "lib/base", "1")
        cls.l5 = cls._outpost(sync_config(cls.cloud.url, "ReadWrite", CLOSED))
        cls.l4 = cls._outpost(sync_config(cls.l5.url, "ReadWrite", CLOSED))
        cls.l3 = cls._outpost(sync_config(cls.l4.url, "ReadOnly"))

    @classmethod
    def _outpost(cls, cfg, **kw) -> Outpost:
        op = Outpost(config=cfg, **kw).__enter__()
        cls.addClassCleanup(op.__exit__, None, None, None)
        return op

    def test_1_pull_at_l3_of_an_image_only_in_the_cloud(self):
        dest = os.path.join(self.tmp, "pulled-base-l3")
        top = pull_layout(f"127.0.0.1:{self.l3.port}", "lib/base", "1", dest)
        self.assertEqual(top, self.base.top_digest)
        assert_registry_holds(self, self.l3.url, "lib/base", "1", self.base)

    def test_2_push_at_l4_reaches_l5_then_the_cloud_with_sync_now(self):
        repo = "site/app"
        push_layout(self.app, f"127.0.0.1:{self.l4.port}", repo, "1")
        # and a signature of the index (subject before referrer on the way up)
        sig, sig_body, sig_blob = push_referrer(self.l4.url, repo, self.app.top_digest, OCI_INDEX,
                                                len(self.app.top_bytes), b"signed by the site\n")
        # served at L4 at once
        assert_registry_holds(self, self.l4.url, repo, "1", self.app)
        self.assertEqual(referrers(self.l4.url, repo, self.app.top_digest), [sig])
        s4 = sync_status(self.l4)
        self.assertFalse(s4["window"]["open"], s4)
        self.assertGreaterEqual(s4["queue"]["pending"], 1, s4)
        self.assertGreater(s4["queue"]["bytes_pending"], 0, s4)
        self.assertEqual(s4["parent_mode"], "ReadWrite", s4)
        self.assertEqual(metric(self.l4, "outpost_sync_window_open"), 0)
        self.assertGreaterEqual(metric(self.l4, "outpost_replay_pending"), 1)
        # nothing moved while the windows are closed: L5 holds nothing of it
        # (its catalog is local, no upstream call), the cloud saw no write
        self.assertNotIn(repo, Client(self.l5.url).catalog())
        self.assertFalse([r for r in self.cloud.requests() if repo in r[1] and r[0] in WRITE_METHODS],
                         self.cloud.requests())
        start = registry_mark(self.cloud)

        # L4's window: to L5 only
        out = sync_now(self.l4, wait=True)
        s4 = sync_status(self.l4)
        self.assertEqual((s4["queue"]["pending"], s4["queue"]["failed"], s4["queue"]["expired"]), (0, 0, 0),
                         f"{s4}\nsync now said: {out.stdout}")
        self.assertIsNotNone(s4["window"]["last_start"], s4)
        assert_registry_holds(self, self.l5.url, repo, "1", self.app)
        self.assertEqual(referrers(self.l5.url, repo, self.app.top_digest), [sig])
        self.assertIn(repo, Client(self.l5.url).catalog())
        s5 = sync_status(self.l5)
        self.assertGreaterEqual(s5["queue"]["pending"], 1, s5)
        self.assertEqual(manifest_digest(self.cloud.url, repo, "1")[0], 404, "the cloud has it before L5's window")

        # L5's window: to the cloud
        sync_now(self.l5, wait=True)
        s5 = sync_status(self.l5)
        self.assertEqual((s5["queue"]["pending"], s5["queue"]["failed"]), (0, 0), s5)
        assert_registry_holds(self, self.cloud.url, repo, "1", self.app)
        # distribution 2.8 has no referrers API: the signature is there by digest
        st, d, body = manifest_digest(self.cloud.url, repo, sig)
        self.assertEqual((st, d, body), (200, sig, sig_body))
        self.assertEqual(http("HEAD", f"{self.cloud.url}/v2/{repo}/blobs/{sig_blob}").status, 200)
        top = pull_layout(self.cloud.hostport, repo, "1", os.path.join(self.tmp, "app-from-cloud"))
        self.assertEqual(top, self.app.top_digest)
        end = registry_mark(self.cloud)

        during = registry_requests_between(self.cloud, start, end)
        self.assertTrue([r for r in during if r[0] == "PUT" and "/manifests/" in r[1]], during)
        self.assertEqual(registry_write_failures(self.cloud, during), [],
                         f"the cloud refused writes during the replay:\n{during}")
        # every write in the cloud's whole log came from the replay, none failed
        self.assertEqual(registry_write_failures(self.cloud), [])
        # and L5 refused none of L4's writes (its request log: method, path, status)
        refused = [r for r in self.l5.log_records() if r.get("msg") == "request" and r.get("method") in WRITE_METHODS
                   and int(r.get("status", "0")) >= 400]
        self.assertEqual(refused, [], "L5 refused writes replayed by L4")

    def test_3_push_at_readonly_l3_is_refused_with_an_oci_error(self):
        r = http("POST", self.l3.url + "/v2/site/refused/blobs/uploads/")
        self.assertEqual(r.status, 405, r.body)
        self.assertIn("UNSUPPORTED", oci_error_codes(r))
        lay = make_oci_layout(os.path.join(self.tmp, "refused"), tag="1", layers=[{"x": b"refused at L3\n"}])
        p = skopeo_copy(lay.ref, f"docker://127.0.0.1:{self.l3.port}/site/refused:1", check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertEqual(manifest_digest(self.l3.url, "site/refused", "1")[0] // 100, 4)

    def test_4_readwrite_under_readonly_exits_78_at_start(self):
        op = Outpost(config=sync_config(self.l3.url, "ReadWrite", CLOSED), ready=False, expect_exit=EXIT_CONFIG)
        try:
            op.start()
            try:
                rc = op.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.fail("a ReadWrite Outpost under a ReadOnly parent still runs after 30 s (want exit 78)"
                          f"; stderr:\n{op.log_tail(20)}")
            self.assertEqual(rc, EXIT_CONFIG, op.log_tail())
            self.assertIn("ReadOnly", op.log_text())
            op.check_sanitizers()
        finally:
            op.kill()
            op._cleanup()

    def test_5_parent_found_readonly_after_start_blocks_the_replay(self):
        port = free_port()   # nothing listens there yet: the parent is unreachable at start
        child = self._outpost(sync_config(f"http://127.0.0.1:{port}", "ReadWrite", CLOSED))
        lay = make_oci_layout(os.path.join(self.tmp, "blocked"), tag="1", layers=[{"x": b"blocked\n"}])
        push_layout(lay, f"127.0.0.1:{child.port}", "site/blocked", "1")
        parent = PinnedOutpost(config=sync_config(None, "ReadOnly"), port=port).__enter__()
        self.addCleanup(parent.__exit__, None, None, None)
        sync_now(child, wait=False)

        def blocked():
            s = sync_status(child)
            return s if s["state"] == "blocked" else None

        s = wait_until(blocked, 30, interval=0.1, message="the child's replay to be blocked")
        self.assertEqual(s["parent_mode"], "ReadOnly", s)
        self.assertIn("ReadOnly", s["blocked_reason"] or "", s)
        self.assertGreaterEqual(s["queue"]["pending"], 1, s)
        # nothing reached the ReadOnly parent, and the child still serves it
        self.assertEqual(manifest_digest(parent.url, "site/blocked", "1")[0], 404)
        assert_registry_holds(self, child.url, "site/blocked", "1", lay)


if __name__ == "__main__":
    unittest.main()
