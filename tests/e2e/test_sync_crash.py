"""Replay survives crashes on either side (issue #15, "What must be shown",
second point).

An image with a 100 MiB layer is pushed into an Outpost (L4) whose window
is closed; `outpost sync now` opens it. L4 reaches the cloud (Debian
docker-registry) through a ThrottleProxy that paces the child -> parent
bytes (16 MiB/s), so the test can act while the big layer is half way up:
it waits until the proxy has forwarded 20 MiB (more than every other blob
of the image together) and checks the cloud does not hold the layer yet.

- kill -9 of L4 there; restart L4 on the same storage; `sync now --wait`
  exits 0 and the cloud holds exactly the pushed image.
- SIGKILL of the cloud there; start it again on the same port and storage;
  `sync now --wait` exits 0 and the cloud holds exactly the pushed image.

"Exactly": the tag's digest, every manifest by digest and every blob (HEAD
size; small ones hashed) straight at the cloud, then a `skopeo copy --all`
from the cloud (skopeo verifies every blob digest) giving the same digest,
and the cloud lists that one tag in that one repository.
"""

from __future__ import annotations

import os
import tempfile
import unittest

from harness import make_oci_layout, push_layout, random_layer, wait_until
from registry_helpers import Client
from sync_helpers import (CLOSED, PinnedRegistry, ThrottleProxy, assert_registry_holds, pull_layout,
                          registry_write_failures, requires_sync, sync_config, sync_now, sync_status)
from harness import Outpost

MIB = 1 << 20
BIG = 100 * MIB
RATE = 16 * MIB           # bytes/s from L4 to the cloud while the layer goes up
MID = 20 * MIB            # act once this much has gone up


@requires_sync
class ReplayCrash(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="sync-crash-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        # plain tar (no gzip): 100 MiB of random bytes, written fast
        cls.big_layer = random_layer(BIG, seed=153, compress=False)

    def layout(self, name: str):
        return make_oci_layout(os.path.join(self._tmp.name, name), tag="1",
                               layers=[{"etc/motd": f"{name}\n".encode()}, self.big_layer])

    def setUp(self):
        self.cloud = PinnedRegistry()
        self.cloud.__enter__()
        self.addCleanup(self.cloud.__exit__, None, None, None)
        self.proxy = ThrottleProxy(self.cloud.port, rate=None)
        self.addCleanup(self.proxy.close)
        self.l4 = Outpost(config=sync_config(self.proxy.url, "ReadWrite", CLOSED))
        self.l4.__enter__()
        self.addCleanup(self.l4.__exit__, None, None, None)

    def push_and_open_window(self, repo: str, lay) -> str:
        push_layout(lay, f"127.0.0.1:{self.l4.port}", repo, "1")
        big = lay.images[0].layer_digests[-1]
        self.assertEqual(len(lay.blobs[big]), len(self.big_layer))
        self.proxy.set_rate(RATE)
        sync_now(self.l4, wait=False)
        wait_until(lambda: self.proxy.up_bytes >= MID, 60, interval=0.01,
                   message=lambda: f"{MID} bytes on their way to the cloud (so far {self.proxy.up_bytes})")
        return big

    def cloud_has_blob_file(self, digest: str) -> bool:
        """distribution writes a blob's data file only once the upload is
        complete and verified (partial uploads live under _uploads/)."""
        hexd = digest.split(":", 1)[1]
        return os.path.exists(os.path.join(self.cloud.root, "docker", "registry", "v2", "blobs", "sha256",
                                           hexd[:2], hexd, "data"))

    def assert_cloud_holds_exactly(self, repo: str, lay) -> None:
        assert_registry_holds(self, self.cloud.url, repo, "1", lay)
        top = pull_layout(self.cloud.hostport, repo, "1", os.path.join(self._tmp.name, f"pulled-{self.id()}"))
        self.assertEqual(top, lay.top_digest)
        c = Client(self.cloud.url)
        self.assertEqual(c.catalog(), [repo])
        self.assertEqual(c.tags(repo), ["1"])
        self.assertEqual([f for f in registry_write_failures(self.cloud) if "manifest" in f], [])

    def test_kill_9_of_the_outpost_mid_layer(self):
        repo = "site/crash-child"
        lay = self.layout("crash-child")
        big = self.push_and_open_window(repo, lay)
        s = sync_status(self.l4)
        self.l4.kill()   # SIGKILL in the middle of the 100 MiB layer
        self.assertEqual(s["state"], "replaying", s)
        self.assertFalse(self.cloud_has_blob_file(big),
                         "the layer was complete before the kill: the test did not hit mid-replay")
        self.proxy.set_rate(None)
        self.l4.proc = None      # it is gone; restart() starts it again on the same port and storage
        self.l4.restart()
        sync_now(self.l4, wait=True, timeout=180)
        s = sync_status(self.l4)
        self.assertEqual((s["queue"]["pending"], s["queue"]["failed"], s["queue"]["expired"]), (0, 0, 0), s)
        self.assert_cloud_holds_exactly(repo, lay)

    def test_cloud_killed_mid_layer_and_started_again(self):
        repo = "site/crash-cloud"
        lay = self.layout("crash-cloud")
        big = self.push_and_open_window(repo, lay)
        self.cloud.kill()        # SIGKILL: no draining of the upload in flight
        self.assertFalse(self.cloud_has_blob_file(big),
                         "the layer was complete before the cloud went: the test did not hit mid-replay")
        self.proxy.set_rate(None)
        s = sync_status(self.l4)
        self.assertGreaterEqual(s["queue"]["pending"], 1, s)
        self.cloud.start()       # same port, same storage
        sync_now(self.l4, wait=True, timeout=180)
        s = sync_status(self.l4)
        self.assertEqual((s["queue"]["pending"], s["queue"]["failed"], s["queue"]["expired"]), (0, 0, 0), s)
        self.assert_cloud_holds_exactly(repo, lay)


if __name__ == "__main__":
    unittest.main()
