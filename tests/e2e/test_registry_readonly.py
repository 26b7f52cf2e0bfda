"""ReadOnly mode (issue 3, item 7): with registry.mode = "ReadOnly" every
write (uploads, mounts, manifest and tag pushes, deletes) answers an OCI
UNSUPPORTED error and changes nothing, while pulls (manifests, blobs,
ranges, tags, catalog, referrers, skopeo) keep working."""

import os
import tempfile
import unittest

from harness import OCI_MANIFEST, Outpost, make_oci_layout, sha256_digest, skopeo, skopeo_copy
from registry_helpers import Client, oci_error_codes, snapshot

REPO = "ro/app"


class ReadOnly(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="registry-readonly-")
        root = os.path.join(cls._tmp.name, "storage")
        # Fill the store in ReadWrite mode, then serve the same root ReadOnly.
        with Outpost(root=root) as rw:
            c = Client(rw.url)
            cls.layer = b"read-only layer " * 64
            cls.manifest_d, cls.manifest = c.push_image(REPO, "v1", [cls.layer])
            cls.layer_d = sha256_digest(cls.layer)
            cls.upload_loc = c.start_upload(REPO)  # a session left open by a client
            cls.lay = make_oci_layout(os.path.join(cls._tmp.name, "src"), tag="v2")
            skopeo_copy(cls.lay.ref, f"docker://{rw.host}:{rw.port}/ro/skopeo:v2")
        cls.op = Outpost(root=root, config={"registry": {"mode": "ReadOnly"}}).__enter__()
        cls.c = Client(cls.op.url)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.op.__exit__(None, None, None)
        finally:
            cls._tmp.cleanup()

    def snap(self):
        return snapshot(self.c, self.op.root, [REPO, "ro/new"],
                        [(REPO, self.layer_d), (REPO, self.manifest_d), ("ro/new", self.layer_d)])

    def test_writes_are_unsupported_and_change_nothing(self):
        new = b"new bytes"
        nd = sha256_digest(new)
        loc = self.upload_loc
        cases = [
            ("POST", f"/v2/{REPO}/blobs/uploads/", None, {}),
            ("POST", f"/v2/ro/new/blobs/uploads/", None, {}),
            ("POST", f"/v2/{REPO}/blobs/uploads/?digest={nd}", new, {}),
            ("POST", f"/v2/ro/new/blobs/uploads/?mount={self.layer_d}&from={REPO}", None, {}),
            ("PATCH", loc, new, {"Content-Range": f"0-{len(new) - 1}"}),
            ("PUT", f"{loc}?digest={nd}", new, {}),
            ("DELETE", loc, None, {}),
            ("PUT", f"/v2/{REPO}/manifests/v2", self.manifest, {"Content-Type": OCI_MANIFEST}),
            ("PUT", f"/v2/{REPO}/manifests/{self.manifest_d}", self.manifest, {"Content-Type": OCI_MANIFEST}),
            ("PUT", f"/v2/ro/new/manifests/v1", self.manifest, {"Content-Type": OCI_MANIFEST}),
            ("DELETE", f"/v2/{REPO}/manifests/v1", None, {}),
            ("DELETE", f"/v2/{REPO}/manifests/{self.manifest_d}", None, {}),
            ("DELETE", f"/v2/{REPO}/blobs/{self.layer_d}", None, {}),
        ]
        for method, path, body, headers in cases:
            with self.subTest(f"{method} {path}"):
                before = self.snap()
                r = self.c.req(method, path, body=body, headers=headers)
                self.assertEqual(r.status, 405, r.body)
                self.assertEqual(oci_error_codes(r), ["UNSUPPORTED"])
                self.assertEqual(self.snap(), before)
        # the session left open before the switch is untouched (and readable)
        s = self.c.req("GET", loc)
        self.assertEqual((s.status, s.header("Range")), (204, "0-0"))

    def test_pulls_work(self):
        m = self.c.get_manifest(REPO, "v1")
        self.assertEqual((m.status, m.body, m.header("Docker-Content-Digest")),
                         (200, self.manifest, self.manifest_d))
        h = self.c.req("HEAD", f"/v2/{REPO}/manifests/v1")
        self.assertEqual((h.status, h.header("Content-Length")), (200, str(len(self.manifest))))
        b = self.c.req("GET", f"/v2/{REPO}/blobs/{self.layer_d}")
        self.assertEqual((b.status, b.body), (200, self.layer))
        b = self.c.req("GET", f"/v2/{REPO}/blobs/{self.layer_d}", headers={"Range": "bytes=0-3"})
        self.assertEqual((b.status, b.body), (206, self.layer[:4]))
        self.assertEqual(self.c.tags(REPO), ["v1"])
        self.assertEqual(self.c.catalog(), ["ro/app", "ro/skopeo"])
        r = self.c.req("GET", f"/v2/{REPO}/referrers/{self.manifest_d}")
        self.assertEqual((r.status, r.json()["manifests"]), (200, []))
        self.assertEqual(self.c.req("GET", "/v2/").status, 200)

    def test_skopeo_pulls_and_cannot_push(self):
        out = os.path.join(self._tmp.name, "pulled")
        skopeo_copy(f"docker://{self.op.host}:{self.op.port}/ro/skopeo:v2", f"oci:{out}:v2", "--preserve-digests")
        with open(os.path.join(out, "blobs", "sha256", self.lay.top_digest.split(":")[1]), "rb") as f:
            self.assertEqual(f.read(), self.lay.top_bytes)
        p = skopeo("copy", "--dest-tls-verify=false", self.lay.ref,
                   f"docker://{self.op.host}:{self.op.port}/ro/pushed:v2", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn("ro/pushed", self.c.catalog())


if __name__ == "__main__":
    unittest.main()
