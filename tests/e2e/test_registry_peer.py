"""The harness's real peers work: Debian's docker-registry starts, and skopeo
pushes images built by make_oci_layout into it (single image and a two-platform
index), byte for byte."""

import os
import tempfile
import unittest

from harness import (ACCEPT_ALL_MANIFESTS, OCI_INDEX, OCI_MANIFEST, DockerRegistry,
                     http, make_oci_layout, random_layer, sha256_digest, skopeo, skopeo_copy)


class RegistryPeer(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="oci-layout-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def test_push_single_image(self):
        lay = make_oci_layout(os.path.join(self.tmp, "img"),
                              layers=[{"etc/motd": b"hi\n"}, random_layer(64 * 1024, seed=1)],
                              tag="v1")
        with DockerRegistry() as reg:
            skopeo_copy(lay.ref, f"docker://{reg.hostport}/e2e/hello:v1")

            r = http("GET", f"{reg.url}/v2/e2e/hello/manifests/v1",
                     headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("Content-Type"), OCI_MANIFEST)
            self.assertEqual(r.header("Docker-Content-Digest"), lay.top_digest)
            self.assertEqual(r.body, lay.top_bytes)

            for d in lay.images[0].layer_digests + [lay.images[0].config_digest]:
                b = http("GET", f"{reg.url}/v2/e2e/hello/blobs/{d}")
                self.assertEqual(b.status, 200, d)
                self.assertEqual(sha256_digest(b.body), d)

            reqs = reg.requests()
            self.assertIn(("PUT", "/v2/e2e/hello/manifests/v1", 201), reqs)

            # and back out with skopeo into a fresh layout
            out = os.path.join(self.tmp, "back")
            skopeo_copy(f"docker://{reg.hostport}/e2e/hello:v1", f"oci:{out}:v1")
            self.assertTrue(os.path.exists(os.path.join(
                out, "blobs", "sha256", lay.top_digest.split(":")[1])))

    def test_push_multi_arch_index(self):
        lay = make_oci_layout(os.path.join(self.tmp, "multi"),
                              platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        self.assertEqual(len(lay.images), 2)
        self.assertNotEqual(lay.images[0].manifest_digest, lay.images[1].manifest_digest)
        with DockerRegistry() as reg:
            skopeo_copy(lay.ref, f"docker://{reg.hostport}/e2e/multi:latest", "--all")

            r = http("GET", f"{reg.url}/v2/e2e/multi/manifests/latest",
                     headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("Content-Type"), OCI_INDEX)
            self.assertEqual(r.header("Docker-Content-Digest"), lay.top_digest)
            self.assertEqual(r.body, lay.top_bytes)
            for im in lay.images:
                m = http("GET", f"{reg.url}/v2/e2e/multi/manifests/{im.manifest_digest}",
                         headers={"Accept": OCI_MANIFEST})
                self.assertEqual(m.status, 200)
                self.assertEqual(m.body, im.manifest)

            # skopeo picks the arm64 image when asked to
            p = skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                       f"docker://{reg.hostport}/e2e/multi:latest")
            self.assertIn('"Architecture": "arm64"', p.stdout)


if __name__ == "__main__":
    unittest.main()
