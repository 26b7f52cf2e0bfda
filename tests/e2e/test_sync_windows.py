"""Sync windows (issue #15, "What must be shown", third point): with a
schedule whose window is not open, nothing of an Outpost's reaches its
parent (no replay, no tag revalidation, no health probe), while clients
keep pulling cached images from it; after `outpost sync now`, it does.

The parent is a Debian docker-registry; its access log is cut with
harness.registry_mark (a marker request the test sends itself), so "no
request at all" is exact: nothing between two markers. The issue asks for
two minutes of silence; the e2e watches QUIET_S seconds (default 25,
OUTPOST_E2E_QUIET_S=120 for the full length) to keep the suite, which runs
twice in CI, short. During that time the cached tag is stale (tag_ttl 1s:
without the sync rules every pull by tag sends a HEAD, which today's
Outpost does) and two pushed images wait in the replay queue.

A second Outpost with pull_through = "never" answers a miss outside a
window without asking its parent.
"""

from __future__ import annotations

import os
import tempfile
import time
import unittest

from harness import (DockerRegistry, Outpost, http, make_oci_layout, push_layout, random_layer,
                     registry_mark, registry_requests_between)
from sync_helpers import (CLOSED, assert_registry_holds, manifest_digest, metric, pull_layout,
                          registry_write_failures, requires_sync, sync_config, sync_now, sync_status)

QUIET_S = float(os.environ.get("OUTPOST_E2E_QUIET_S", "25"))


@requires_sync
class Windows(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="sync-windows-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        tmp = cls.tmp = cls._tmp.name
        cls.base = make_oci_layout(os.path.join(tmp, "base"), tag="1",
                                   layers=[{"etc/os-release": b"windows base\n"}, random_layer(64 * 1024, seed=161)],
                                   platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cls.own = make_oci_layout(os.path.join(tmp, "own"), tag="1", layers=[{"own.txt": b"pushed at the site\n"}])
        cls.late = make_oci_layout(os.path.join(tmp, "late"), tag="1", layers=[{"late.txt": b"pushed later\n"}])
        cls.cloud = DockerRegistry().__enter__()
        cls.addClassCleanup(cls.cloud.__exit__, None, None, None)
        push_layout(cls.base, cls.cloud.hostport, "lib/base", "1")

    def outpost(self, sync: dict, **tables) -> Outpost:
        op = Outpost(config=sync_config(self.cloud.url, "ReadWrite", sync, **tables))
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        return op

    def test_closed_window_sends_nothing_to_the_parent_until_sync_now(self):
        op = self.outpost(CLOSED, cache={"tag_ttl": "1s"})
        hp = f"127.0.0.1:{op.port}"
        # warm: a miss outside a window is pulled through (pull_through = "always", the default)
        self.assertEqual(pull_layout(hp, "lib/base", "1", os.path.join(self.tmp, "warm")), self.base.top_digest)
        push_layout(self.own, hp, "site/own", "1")
        push_layout(self.late, hp, "site/late", "1")
        s = sync_status(op)
        self.assertFalse(s["window"]["open"], s)
        self.assertIsNotNone(s["window"]["next"], s)
        self.assertGreaterEqual(s["queue"]["pending"], 1, s)

        start = registry_mark(self.cloud)
        t_end = time.monotonic() + QUIET_S
        pulls = 0
        while time.monotonic() < t_end:   # a fixed observation period, bounded
            d = os.path.join(self.tmp, f"quiet-{pulls}")
            self.assertEqual(pull_layout(hp, "lib/base", "1", d), self.base.top_digest)
            st, dg, _ = manifest_digest(op.url, "site/own", "1")
            self.assertEqual((st, dg), (200, self.own.top_digest))
            self.assertEqual(http("GET", op.url + "/v2/").status, 200)
            pulls += 1
        s = sync_status(op)
        end = registry_mark(self.cloud)
        quiet = registry_requests_between(self.cloud, start, end)
        self.assertEqual(quiet, [], f"the parent heard from the Outpost outside its window"
                                    f" ({pulls} pulls in {QUIET_S:.0f}s)")
        self.assertGreaterEqual(pulls, 2)
        self.assertFalse(s["window"]["open"], s)
        self.assertNotEqual(s["state"], "replaying", s)
        self.assertGreaterEqual(s["queue"]["pending"], 2, s)
        self.assertEqual(metric(op, "outpost_sync_window_open"), 0)

        out = sync_now(op, wait=True)
        after = registry_requests_between(self.cloud, end)
        self.assertTrue([r for r in after if r[0] == "PUT" and "/site/own/manifests/" in r[1]],
                        f"no manifest PUT after sync now: {after}\n{out.stdout}")
        assert_registry_holds(self, self.cloud.url, "site/own", "1", self.own)
        assert_registry_holds(self, self.cloud.url, "site/late", "1", self.late)
        self.assertEqual(registry_write_failures(self.cloud), [])
        s = sync_status(op)
        self.assertEqual(s["queue"]["pending"], 0, s)
        self.assertIsNotNone(s["window"]["last_start"], s)

    def test_pull_through_never_keeps_misses_local_outside_a_window(self):
        op = self.outpost({**CLOSED, "pull_through": "never"})
        start = registry_mark(self.cloud)
        st, _, body = manifest_digest(op.url, "lib/base", "1")
        self.assertNotEqual(st, 200, body[:300])
        self.assertIn(st // 100, (4, 5), body[:300])
        end = registry_mark(self.cloud)
        # (a GET /v2/ would be the mode check at start, which may come late)
        self.assertEqual([r for r in registry_requests_between(self.cloud, start, end) if "/lib/base/" in r[1]], [])


if __name__ == "__main__":
    unittest.main()
