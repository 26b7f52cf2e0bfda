"""Cache management with kept repositories (issue #18, "What must be shown":
kept and pushed-and-owed content survive whatever is pulled).

The cloud (Debian docker-registry) holds site/keep:v1 and lib/img1..8. The
child keeps "site/keep" (sync.keep) and has a quota that holds the kept
image, one pushed image and three of the pulled ones:

- one window (`outpost sync now --wait`) keeps site/keep:v1; a restart
  closes that manual window;
- site/owed:v1 is pushed with the cloud down and the window closed, so it
  stays owed (pending in the replay queue) to the end;
- lib/img1..8 are pulled through the child one after the other, img1 read
  again before each new pull: every pull from the fourth on evicts one
  image (five passes), least recently used first: img2..img6 go, img1
  (read again each time), img7 and img8 stay;
- with the cloud stopped, site/keep:v1 (manifest and every blob, also on
  disk), site/owed:v1, img1, img7 and img8 pull byte-identical from the
  child; img2..img6 are gone.
"""

import json
import os
import time
import unittest

from harness import Outpost, wait_until
from registry_helpers import Client
from sync_helpers import CLOSED, PinnedRegistry, requires_sync, sync_config, sync_now, sync_status
from test_storage import blob_path, pull, push_image, rnd, status

KIB = 1024
KEEP_LAYER = 256 * KIB
OWED_LAYER = 256 * KIB
LAYER = 200 * KIB
# Kept + owed + three pulled images, plus room for configs and manifests
# (under 1 KiB each); a fourth pulled image is over by ~140 KiB, so each
# pass evicts exactly one image (200 KiB).
QUOTA = KEEP_LAYER + OWED_LAYER + 3 * LAYER + 64 * KIB
IMAGES = 8


@requires_sync
class KeptSurviveEviction(unittest.TestCase):
    def test_kept_and_owed_survive_lru_eviction_by_pulls(self):
        cloud = PinnedRegistry()
        cloud.__enter__()
        self.addCleanup(cloud.__exit__, None, None, None)
        keep_digest, _ = push_image(cloud.url, "site/keep", "v1", rnd(KEEP_LAYER, "kept"))
        for i in range(1, IMAGES + 1):
            push_image(cloud.url, f"lib/img{i}", "v1", rnd(LAYER, f"kept-img{i}"))

        child = Outpost(sync_config(cloud.url, "ReadWrite", {**CLOSED, "keep": ["site/keep"]},
                                    storage={"max_size": f"{QUOTA // KIB}KiB", "evict_grace": "0s",
                                             "gc_interval": "0s"}))
        child.__enter__()
        self.addCleanup(child.__exit__, None, None, None)

        # One window keeps site/keep:v1; a restart closes the manual window.
        sync_now(child, wait=True)
        wait_until(lambda: [k for k in sync_status(child)["keep"] if k["last_refresh"] and k["tags"] == 1],
                   timeout=30, message=lambda: f"site/keep refreshed: {sync_status(child)['keep']}")
        child.stop()
        child.start()
        self.assertFalse(sync_status(child)["window"]["open"], sync_status(child))
        want_keep = pull(child.url, "site/keep", "v1")
        self.assertIn(keep_digest, want_keep)

        # Pushed with the cloud down and the window closed: owed.
        cloud.kill()
        Client(child.url).push_image("site/owed", "v1", [rnd(OWED_LAYER, "owed")])
        want_owed = pull(child.url, "site/owed", "v1")
        cloud.start()
        wait_until(lambda: sync_status(child)["queue"]["pending"] > 0, timeout=10,
                   message=lambda: f"the push to be owed: {sync_status(child)}")

        held = {}
        for i in (1, 2, 3):
            held[i] = pull(child.url, f"lib/img{i}", "v1")
            time.sleep(0.01)  # distinct access times (ms)
        st = status(child)["storage"]
        self.assertEqual(st["evicted"]["manifests"], 0, st)
        for i in range(4, IMAGES + 1):
            self.assertEqual(pull(child.url, "lib/img1", "v1"), held[1])
            time.sleep(0.01)
            held[i] = pull(child.url, f"lib/img{i}", "v1")
            wait_until(lambda: status(child)["storage"]["evicted"]["manifests"] >= i - 3, timeout=20,
                       message=lambda: f"eviction after img{i}: {status(child)['storage']}")
            time.sleep(0.01)
        st = status(child)["storage"]
        self.assertEqual(st["evicted"]["manifests"], IMAGES - 3, st)
        self.assertGreaterEqual(st["evicted"]["passes"], IMAGES - 3, st)
        self.assertLessEqual(st["bytes"]["total"], QUOTA, st)
        self.assertGreaterEqual(st["bytes"]["kept"], KEEP_LAYER, st)
        self.assertGreaterEqual(st["bytes"]["pushed"], OWED_LAYER, st)
        # Still owed at the end: nothing replayed it meanwhile.
        q = sync_status(child)["queue"]
        self.assertGreater(q["pending"], 0, q)
        self.assertEqual(q["done"], 0, q)

        # With the cloud gone, what is held is what eviction left.
        cloud.kill()
        keep_man = json.loads(want_keep[keep_digest])
        for desc in [keep_man["config"], *keep_man["layers"]]:
            self.assertTrue(os.path.exists(blob_path(child.root, desc["digest"])), f"kept blob {desc} is gone")
        self.assertEqual(pull(child.url, "site/keep", "v1"), want_keep)
        self.assertEqual(pull(child.url, "site/owed", "v1"), want_owed)
        for i in (1, IMAGES - 1, IMAGES):
            self.assertEqual(pull(child.url, f"lib/img{i}", "v1"), held[i], f"img{i} was evicted")
        c = Client(child.url)
        for i in range(2, IMAGES - 1):
            r = c.get_manifest(f"lib/img{i}", "v1")
            self.assertNotEqual(r.status, 200, f"img{i} (least recently used) survived")


if __name__ == "__main__":
    unittest.main()
