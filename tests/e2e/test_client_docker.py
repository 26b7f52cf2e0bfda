"""Docker Engine (Debian's dockerd 20.10, vfs storage) pulling through
Outpost (issue #17), as root in a network namespace with only loopback:

- with conf/clients/docker-daemon.json (`registry-mirrors`), `docker pull
  e2e-app:v1` asks Outpost for docker.io/library/e2e-app, which Outpost
  fetches from its parent; and `docker pull 127.0.0.1:PORT/e2e/app:v1` names
  Outpost directly (127.0.0.0/8 is an insecure registry by default);
- the image Docker holds is the parent's (image id = config digest, layer
  diff ids, repo digest = the index digest), every request went to Outpost
  and the parent sent each blob once; `docker push` of it to Outpost works;
- with the parent stopped, both pulls work again from Outpost's cache;
- what Docker prints for a tag that is not cached while the parent is down,
  and while Outpost itself is down (quoted in docs/operations.md).
"""

import os
import re

from client_helpers import ClientCase, dockerd_in_netns, recipe
from harness import ACCEPT_ALL_MANIFESTS, http, sha256_digest


class DockerClient(ClientCase):
    def assert_image(self, dk, ref: str, repo_digest: str) -> None:
        info = dk.inspect(ref)
        self.assertEqual(info["Id"], self.native.config_digest)
        self.assertEqual(info["RootFS"]["Layers"], self.diff_ids())
        self.assertIn(repo_digest, info["RepoDigests"])

    def test_pull_mirror_and_direct_then_parent_down(self):
        host = f"127.0.0.1:{self.op.port}"
        hub_ref = f"{self.HUB_NAME}:{self.TAG}"
        direct_ref = f"{host}/{self.DIRECT_REPO}:{self.TAG}"
        with dockerd_in_netns(os.path.join(self.tmp, "dockerd"),
                              daemon_json_text=recipe("docker-daemon.json", host)) as dk:
            # 1. online: through the mirror, then Outpost named directly
            before = len(self.op_requests())
            dk.docker("pull", hub_ref)
            self.assert_image(dk, hub_ref, f"{self.HUB_NAME}@{self.lay.top_digest}")
            reqs = self.op_requests(before)
            hub_paths = [(r["method"], r["path"]) for r in reqs]
            # Docker's mirror conversation: ping, HEAD by tag, GETs by digest
            self.assertEqual(hub_paths[:2], [("GET", "/v2/"), ("HEAD", f"/v2/library/{self.HUB_NAME}/manifests/{self.TAG}")])
            self.assertIn(("GET", f"/v2/library/{self.HUB_NAME}/manifests/{self.lay.top_digest}"), hub_paths)
            self.assertNotIn(("GET", f"/v2/library/{self.HUB_NAME}/manifests/{self.TAG}"), hub_paths)
            for d in self.native_blobs():
                self.assertTrue(self.served_by_outpost(reqs, d), f"{d} not served by Outpost: {hub_paths}")

            dk.docker("pull", direct_ref)
            self.assert_image(dk, direct_ref, f"{host}/{self.DIRECT_REPO}@{self.lay.top_digest}")
            self.assert_parent_sent_each_blob_once()
            m = self.metrics()
            self.assertGreaterEqual(m.get("outpost_cache_fills_committed_total", 0), len(self.native_blobs()))

            # pushing to Outpost named directly (the layers are mounted from
            # e2e/app, where Docker knows they came from)
            pushed = f"{host}/e2e/pushed:{self.TAG}"
            dk.docker("tag", hub_ref, pushed)
            out = dk.docker("push", pushed).stdout
            m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", out)
            self.assertIsNotNone(m, out)
            r = http("GET", f"{self.op.url}/v2/e2e/pushed/manifests/{self.TAG}",
                     headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r.status, sha256_digest(r.body), len(r.body)), (200, m.group(1), int(m.group(2))))
            dk.docker("image", "rm", pushed)

            # 2. the parent goes away: both pulls are served from the cache
            self.parent.stop()
            dk.docker("image", "rm", hub_ref, direct_ref)
            before = len(self.op_requests())
            dk.docker("pull", hub_ref)
            dk.docker("pull", direct_ref)
            self.assert_image(dk, hub_ref, f"{self.HUB_NAME}@{self.lay.top_digest}")
            self.assert_image(dk, direct_ref, f"{host}/{self.DIRECT_REPO}@{self.lay.top_digest}")
            again = self.op_requests(before)
            for d in self.native_blobs():
                self.assertTrue(self.served_by_outpost(again, d), f"{d} not served by Outpost offline")
            self.assertGreater(self.metrics().get("outpost_cache_served_offline_total", 0), 0)

            # 3. what Docker shows for a tag not cached while the parent is down
            # (through the mirror: HEAD 404, GET 503, then Docker goes to
            # Docker Hub, which this network namespace cannot reach)
            p = dk.docker("pull", f"{self.HUB_NAME}:missing", check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("registry-1.docker.io", p.stderr)
            self.say("docker pull via mirror, parent down, not cached", p.stderr)
            p = dk.docker("pull", f"{host}/{self.DIRECT_REPO}:missing", check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("503 Parent Offline And Not Cached", p.stderr)
            self.say("docker pull direct, parent down, not cached", p.stderr)

            # 4. ... and while Outpost itself is down
            self.op.stop()
            dk.docker("image", "rm", hub_ref, direct_ref)
            p = dk.docker("pull", hub_ref, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("registry-1.docker.io", p.stderr)
            self.say("docker pull via mirror, Outpost down", p.stderr)
            p = dk.docker("pull", direct_ref, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("connection refused", p.stderr)
            self.say("docker pull direct, Outpost down", p.stderr)
            # the mirror's answer is only in dockerd's log
            self.assertIn("Attempting next endpoint for pull after error: received unexpected HTTP status:"
                          " 503 Parent Offline And Not Cached", dk.log_text())
