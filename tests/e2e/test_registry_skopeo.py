"""skopeo round trip through Outpost (issue 3, item 1): a multi-architecture
image (an index, two platform manifests, their configs and layers, one
incompressible 100 MiB layer) goes from an OCI layout into Outpost with
`skopeo copy --all --preserve-digests` and back out into a new layout with
every digest and byte identical; after a restart on the same storage root a
second pull still gets everything."""

import filecmp
import json
import os
import tempfile
import unittest

from harness import (ACCEPT_ALL_MANIFESTS, DOCKER_MANIFEST, OCI_INDEX, SANITIZED, Outpost, http, make_oci_layout,
                     peak_rss_kb, random_layer, sha256_digest, skopeo_copy)
from registry_helpers import Client, bad_blob_files

BIG = 100 * 1024 * 1024


def layout_blobs(path: str) -> set[str]:
    return set(os.listdir(os.path.join(path, "blobs", "sha256")))


def index_entries(path: str) -> list[tuple]:
    with open(os.path.join(path, "index.json")) as f:
        idx = json.load(f)
    return sorted((m["mediaType"], m["digest"], m["size"]) for m in idx["manifests"])


class SkopeoRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="registry-skopeo-")
        cls.tmp = cls._tmp.name
        big = random_layer(BIG, seed=3, compress=False)  # a tar of random bytes: does not compress
        cls.lay = make_oci_layout(os.path.join(cls.tmp, "src"), layers=[big], tag="v1",
                                  platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        del big

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def assert_same_layout(self, out: str):
        src = self.lay.path
        self.assertEqual(index_entries(out), index_entries(src))
        want, got = layout_blobs(src), layout_blobs(out)
        self.assertEqual(got, want, "blob sets differ")
        _match, mismatch, errors = filecmp.cmpfiles(os.path.join(src, "blobs", "sha256"),
                                                    os.path.join(out, "blobs", "sha256"),
                                                    sorted(want), shallow=False)
        self.assertEqual((mismatch, errors), ([], []))
        for name in got:  # and every file is what its name says
            with open(os.path.join(out, "blobs", "sha256", name), "rb") as f:
                self.assertEqual(sha256_digest(f.read()), "sha256:" + name)

    def test_multi_arch_copy_in_and_out_survives_restart(self):
        lay = self.lay
        self.assertEqual(len(lay.images), 2)
        self.assertTrue(any(len(b) >= BIG for b in lay.blobs.values()))
        with Outpost() as op:
            dest = f"docker://{op.host}:{op.port}/e2e/multi:v1"
            skopeo_copy(lay.ref, dest, "--all", "--preserve-digests", timeout=300)

            c = Client(op.url)
            r = http("GET", f"{op.url}/v2/e2e/multi/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual(r.header("Content-Type"), OCI_INDEX)
            self.assertEqual(r.header("Docker-Content-Digest"), lay.top_digest)
            self.assertEqual(r.body, lay.top_bytes)
            for im in lay.images:
                m = c.get_manifest("e2e/multi", im.manifest_digest)
                self.assertEqual((m.status, m.body), (200, im.manifest))
                for d in [im.config_digest, *im.layer_digests]:
                    self.assertEqual(c.head_blob("e2e/multi", d), 200, d)
            self.assertEqual(c.tags("e2e/multi"), ["v1"])
            self.assertIn("e2e/multi", c.catalog())

            out1 = os.path.join(self.tmp, "out1")
            skopeo_copy(dest, f"oci:{out1}:v1", "--all", "--preserve-digests", timeout=300)
            self.assert_same_layout(out1)
            # Invariant 6: bodies stream; 100 MiB in and out leaves memory flat
            # (about 10 MiB here). Sanitizer builds keep shadow memory: no bound.
            if not SANITIZED:
                self.assertLess(peak_rss_kb(op.pid), 48 * 1024)

            op.restart()  # SIGTERM (exit 0 checked), then the same storage root again
            out2 = os.path.join(self.tmp, "out2")
            skopeo_copy(dest, f"oci:{out2}:v1", "--all", "--preserve-digests", timeout=300)
            self.assert_same_layout(out2)
            self.assertEqual(bad_blob_files(op.root), [])

    def test_docker_format_and_repo_to_repo_copy(self):
        lay = make_oci_layout(os.path.join(self.tmp, "small"), tag="s1",
                              layers=[random_layer(300 * 1024, seed=4), {"etc/hostname": b"edge\n"}])
        with Outpost() as op:
            hp = f"{op.host}:{op.port}"
            # skopeo converts to Docker schema 2 on the way in (new digests)
            skopeo_copy(lay.ref, f"docker://{hp}/e2e/docker:s1", "--format", "v2s2")
            r = http("GET", f"{op.url}/v2/e2e/docker/manifests/s1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual(r.header("Content-Type"), DOCKER_MANIFEST)
            self.assertEqual(r.header("Docker-Content-Digest"), sha256_digest(r.body))
            man = json.loads(r.body)
            self.assertEqual(man["mediaType"], DOCKER_MANIFEST)
            # the layer bytes are unchanged by the conversion
            self.assertEqual(sorted(l["digest"] for l in man["layers"]), sorted(lay.images[0].layer_digests))
            # registry to registry, inside Outpost: blobs can be mounted
            skopeo_copy(f"docker://{hp}/e2e/docker:s1", f"docker://{hp}/e2e/copy:s1", "--preserve-digests")
            r2 = http("GET", f"{op.url}/v2/e2e/copy/manifests/s1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r2.status, r2.body), (200, r.body))
            out = os.path.join(self.tmp, "small-out")
            skopeo_copy(f"docker://{hp}/e2e/copy:s1", f"dir:{out}")
            for d in [*(l["digest"] for l in man["layers"]), man["config"]["digest"]]:
                with open(os.path.join(out, d.split(":")[1]), "rb") as f:
                    self.assertEqual(sha256_digest(f.read()), d)
            self.assertEqual(sorted(Client(op.url).catalog()), ["e2e/copy", "e2e/docker"])


if __name__ == "__main__":
    unittest.main()
