"""Kept repositories (issue #15, "What must be shown", fourth point).

The cloud (Debian docker-registry) holds factory/app:v1 (multi-arch, three
platforms), factory/app:dev and other/app:v1. L4 (ReadWrite, window
closed) keeps "factory/*:v*"; L3 (ReadOnly) sits under L4. No client ever
pulls anything before `outpost sync now --wait` on L4 (one window); then
the cloud is stopped and:

- factory/app:v1 pulls in full (every platform, skopeo verifies every blob)
  from L4 and from L3 (through L4), with the cloud's digests;
- factory/app:dev and other/app:v1 (not matching) are not held;
- /outpost/status lists the pattern with its last refresh and 1 tag.

Referrers: Debian's distribution 2.8 has no referrers API, so a second
test uses a standalone Outpost as the cloud: factory/app:v1 with a
signature (an OCI 1.1 referrer of its index); after one window and the
cloud stopped, L4's referrers API lists the signature and serves it and
its blob, and the image pulls in full.
"""

from __future__ import annotations

import os
import tempfile
import unittest

from harness import (OCI_INDEX, Outpost, http, make_oci_layout, push_layout, random_layer, registry_mark,
                     registry_requests_between, wait_until)
from sync_helpers import (CLOSED, PinnedRegistry, assert_registry_holds, manifest_digest, pull_layout,
                          push_referrer, referrers, requires_sync, sync_config, sync_now, sync_status)

PATTERN = "factory/*:v*"


def wait_refreshed(op: Outpost) -> dict:
    """The status entry of PATTERN once its refresh is done (last_refresh
    set). `sync now --wait` should already cover it; this bounds the wait
    if it only waits for the replay queue."""
    def done():
        kept = [k for k in sync_status(op)["keep"] if k["pattern"] == PATTERN]
        return kept[0] if len(kept) == 1 and kept[0]["last_refresh"] else None
    return wait_until(done, 30, interval=0.1, message=f"a refresh of {PATTERN} in /outpost/status")


@requires_sync
class KeptRepositories(unittest.TestCase):
    def test_kept_image_pulls_in_full_after_the_cloud_is_gone(self):
        tmp = self._tmpdir()
        v1 = make_oci_layout(os.path.join(tmp, "v1"), tag="v1",
                             layers=[{"app/version": b"v1\n"}, random_layer(128 * 1024, seed=171)],
                             platforms=[("linux", "amd64"), ("linux", "arm64", "v8"), ("linux", "arm", "v7")])
        dev = make_oci_layout(os.path.join(tmp, "dev"), tag="dev", layers=[{"app/version": b"dev\n"}])
        other = make_oci_layout(os.path.join(tmp, "other"), tag="v1", layers=[{"other": b"not kept\n"}])
        cloud = PinnedRegistry()
        cloud.__enter__()
        self.addCleanup(cloud.__exit__, None, None, None)
        push_layout(v1, cloud.hostport, "factory/app", "v1")
        push_layout(dev, cloud.hostport, "factory/app", "dev")
        push_layout(other, cloud.hostport, "other/app", "v1")

        l4 = Outpost(config=sync_config(cloud.url, "ReadWrite", {**CLOSED, "keep": [PATTERN]}))
        l4.__enter__()
        self.addCleanup(l4.__exit__, None, None, None)
        l3 = Outpost(config=sync_config(l4.url, "ReadOnly"))
        l3.__enter__()
        self.addCleanup(l3.__exit__, None, None, None)

        start = registry_mark(cloud)
        sync_now(l4, wait=True)
        kept = wait_refreshed(l4)
        self.assertEqual(kept["tags"], 1, sync_status(l4))
        end = registry_mark(cloud)
        fetched = registry_requests_between(cloud, start, end)
        self.assertFalse([r for r in fetched if "/other/app/" in r[1] and "/blobs/" in r[1]], fetched)

        cloud.kill()
        for who, op in (("L4", l4), ("L3", l3)):
            with self.subTest(at=who):
                top = pull_layout(f"127.0.0.1:{op.port}", "factory/app", "v1", os.path.join(tmp, f"pulled-{who}"))
                self.assertEqual(top, v1.top_digest)
                assert_registry_holds(self, op.url, "factory/app", "v1", v1)
        for repo, tag in (("factory/app", "dev"), ("other/app", "v1")):
            st, _, body = manifest_digest(l4.url, repo, tag)
            self.assertNotEqual(st, 200, f"{repo}:{tag} is held at L4 but does not match {PATTERN}")

    def test_kept_image_brings_its_referrers(self):
        tmp = self._tmpdir()
        v1 = make_oci_layout(os.path.join(tmp, "v1"), tag="v1",
                             layers=[{"app/version": b"v1 signed\n"}, random_layer(64 * 1024, seed=172)],
                             platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cloud = Outpost(config=sync_config(None, "ReadWrite"))
        cloud.__enter__()
        self.addCleanup(cloud.__exit__, None, None, None)
        push_layout(v1, f"127.0.0.1:{cloud.port}", "factory/signed", "v1")
        sig, sig_body, sig_blob = push_referrer(cloud.url, "factory/signed", v1.top_digest, OCI_INDEX,
                                                len(v1.top_bytes), b"signature of v1\n")
        l4 = Outpost(config=sync_config(cloud.url, "ReadWrite", {**CLOSED, "keep": [PATTERN]}))
        l4.__enter__()
        self.addCleanup(l4.__exit__, None, None, None)
        sync_now(l4, wait=True)
        wait_refreshed(l4)
        cloud.stop()

        self.assertEqual(referrers(l4.url, "factory/signed", v1.top_digest), [sig])
        st, d, body = manifest_digest(l4.url, "factory/signed", sig)
        self.assertEqual((st, d, body), (200, sig, sig_body))
        g = http("GET", f"{l4.url}/v2/factory/signed/blobs/{sig_blob}")
        self.assertEqual((g.status, g.body), (200, b"signature of v1\n"))
        top = pull_layout(f"127.0.0.1:{l4.port}", "factory/signed", "v1", os.path.join(tmp, "pulled"))
        self.assertEqual(top, v1.top_digest)

    def _tmpdir(self) -> str:
        t = tempfile.TemporaryDirectory(prefix="sync-keep-e2e-")
        self.addCleanup(t.cleanup)
        return t.name


if __name__ == "__main__":
    unittest.main()
