"""podman 4.3 and skopeo 1.9 pulling through Outpost (issue #17), as root in
a network namespace with only loopback, with conf/clients/registries.conf
(CONTAINERS_REGISTRIES_CONF, skopeo --registries-conf):

- `podman pull docker.io/library/e2e-app:v1` goes to the mirror
  `outpost/docker.io`, i.e. /v2/docker.io/library/e2e-app/..., which selects
  Outpost's [[upstream]] named docker.io; `podman pull
  127.0.0.1:PORT/e2e/app:v1` names Outpost directly (`insecure = true`);
- `podman push` to Outpost named directly works;
- skopeo copies the same two ways (mirror through --registries-conf, and
  Outpost named directly), every platform, into OCI layouts;
- what they hold is the parent's (image id, digests, bytes); the parent sent
  each blob once;
- with the parent stopped, all of it works again from the cache;
- what podman prints for a tag not cached while the parent is down, and
  while Outpost is down (quoted in docs/operations.md).
"""

import filecmp
import json
import os

from client_helpers import ClientCase, podman, recipe
from harness import ACCEPT_ALL_MANIFESTS, http, sha256_digest, skopeo, skopeo_copy


class PodmanClient(ClientCase):
    HUB_REF = f"docker.io/library/{ClientCase.HUB_NAME}:{ClientCase.TAG}"

    def setUp(self):
        self.conf = os.path.join(self.tmp, "registries.conf")
        with open(self.conf, "w") as f:
            f.write(recipe("registries.conf", f"127.0.0.1:{self.op.port}"))
        self.direct_ref = f"127.0.0.1:{self.op.port}/{self.DIRECT_REPO}:{self.TAG}"

    def podman(self, name: str, *args: str, check: bool = True):
        return podman(os.path.join(self.tmp, "podman-" + name), *args, registries_conf=self.conf, check=check)

    def assert_podman_image(self, name: str, ref: str) -> None:
        info = json.loads(self.podman(name, "image", "inspect", ref).stdout)[0]
        self.assertEqual("sha256:" + info["Id"], self.native.config_digest)
        self.assertEqual(info["RootFS"]["Layers"], self.diff_ids())
        self.assertEqual(info["Digest"], self.lay.top_digest)

    def assert_layout(self, out: str) -> None:
        src = os.path.join(self.lay.path, "blobs", "sha256")
        got = os.path.join(out, "blobs", "sha256")
        want = sorted(d.split(":", 1)[1] for d in self.lay.blobs)
        self.assertEqual(sorted(os.listdir(got)), want)
        _ok, mismatch, errors = filecmp.cmpfiles(src, got, want, shallow=False)
        self.assertEqual((mismatch, errors), ([], []))

    def skopeo_both(self, name: str) -> None:
        """skopeo through the mirror and from Outpost directly, all platforms."""
        out = os.path.join(self.tmp, f"skopeo-{name}-hub")
        skopeo("--registries-conf", self.conf, "copy", "--all", "--preserve-digests",
               f"docker://{self.HUB_REF}", f"oci:{out}:{self.TAG}")
        self.assert_layout(out)
        out = os.path.join(self.tmp, f"skopeo-{name}-direct")
        skopeo_copy(f"docker://{self.direct_ref}", f"oci:{out}:{self.TAG}", "--all", "--preserve-digests")
        self.assert_layout(out)

    def test_pull_mirror_and_direct_then_parent_down(self):
        before = len(self.op_requests())
        # 1. online
        self.podman("online", "pull", self.HUB_REF)
        self.assert_podman_image("online", self.HUB_REF)
        reqs = self.op_requests(before)
        paths = [r["path"] for r in reqs]
        self.assertIn(f"/v2/docker.io/library/{self.HUB_NAME}/manifests/{self.TAG}", paths)
        for d in self.native_blobs():
            self.assertTrue(self.served_by_outpost(reqs, d), f"{d} not served by Outpost: {paths}")
        self.podman("online", "pull", self.direct_ref)
        self.assert_podman_image("online", self.direct_ref)
        self.skopeo_both("online")
        self.assert_parent_sent_each_blob_once()
        # skopeo --all fetched the arm64 image too: every blob came through once
        self.assertEqual(self.metrics().get("outpost_cache_fills_committed_total", 0),
                         len({d for im in self.lay.images for d in [im.config_digest, *im.layer_digests]}))

        # podman push to Outpost named directly
        digest_file = os.path.join(self.tmp, "podman-pushed.digest")
        pushed = f"127.0.0.1:{self.op.port}/e2e/podman-pushed:{self.TAG}"
        self.podman("online", "push", "--digestfile", digest_file, self.direct_ref, pushed)
        with open(digest_file) as f:
            want = f.read().strip()
        r = http("GET", f"{self.op.url}/v2/e2e/podman-pushed/manifests/{self.TAG}",
                 headers={"Accept": ACCEPT_ALL_MANIFESTS})
        self.assertEqual((r.status, sha256_digest(r.body)), (200, want))

        # 2. the parent goes away: fresh podman storage, skopeo, from the cache
        self.parent.stop()
        self.podman("offline", "pull", self.HUB_REF)
        self.assert_podman_image("offline", self.HUB_REF)
        self.podman("offline", "pull", self.direct_ref)
        self.assert_podman_image("offline", self.direct_ref)
        self.skopeo_both("offline")
        self.assertGreater(self.metrics().get("outpost_cache_served_offline_total", 0), 0)

        # 3. what podman shows for a tag not cached while the parent is down ...
        p = self.podman("missing", "pull", f"docker.io/library/{self.HUB_NAME}:missing", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.say("podman pull via mirror, parent down, not cached", p.stderr)
        p = self.podman("missing", "pull", f"127.0.0.1:{self.op.port}/{self.DIRECT_REPO}:missing", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("503 Parent Offline And Not Cached", p.stderr)
        self.say("podman pull direct, parent down, not cached", p.stderr)
        # ... and while Outpost itself is down
        self.op.stop()
        p = self.podman("down", "pull", self.HUB_REF, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.say("podman pull via mirror, Outpost down", p.stderr)
        p = self.podman("down", "pull", self.direct_ref, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.say("podman pull direct, Outpost down", p.stderr)
