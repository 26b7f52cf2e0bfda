"""Listings (issue 3, items 3 and 4): the OCI 1.1 referrers API (subject,
artifactType, annotations, ?artifactType= filtering, unknown subjects) and
tags/list and _catalog with n/last pagination and RFC 8288 Link headers."""

import re
import unittest
import urllib.parse

from harness import OCI_INDEX, OCI_MANIFEST, SharedOutpostCase, sha256_digest
from registry_helpers import EMPTY_JSON, OCI_EMPTY, Client, dumps, oci_error_codes

SBOM = "application/vnd.example.sbom.v1+json"
SIG = "application/vnd.example.signature.v1"


def next_link(r) -> str | None:
    """The target of a Link: <...>; rel="next" header, or None."""
    v = r.header("Link")
    if v is None:
        return None
    m = re.fullmatch(r'<([^>]+)>;\s*rel="next"', v.strip())
    assert m, f"malformed Link header {v!r}"
    return m.group(1)


class Referrers(SharedOutpostCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c = Client(cls.op.url)
        cls.repo = "ref/app"
        cls.subject, cls.subject_bytes = cls.c.push_image(cls.repo, "v1", [b"layer one"])
        cls.empty = cls.c.push_blob(cls.repo, EMPTY_JSON)

    def artifact(self, artifact_type, payload: bytes, annotations=None, subject=None,
                 in_field=True) -> tuple[str, bytes]:
        """An artifact manifest (OCI 1.1 guidance): empty config, one blob,
        artifactType either as a field or (in_field=False) as config.mediaType."""
        blob = self.c.push_blob(self.repo, payload)
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_EMPTY if in_field else artifact_type,
                          "digest": self.empty, "size": 2},
               "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": len(payload)}],
               "subject": {"mediaType": OCI_MANIFEST, "digest": subject or self.subject,
                           "size": len(self.subject_bytes)}}
        if in_field:
            man["artifactType"] = artifact_type
        if annotations:
            man["annotations"] = annotations
        body = dumps(man)
        return sha256_digest(body), body

    def referrers(self, subject, query=""):
        return self.c.req("GET", f"/v2/{self.repo}/referrers/{subject}{query}")

    def test_referrers_listing_and_filter(self):
        sbom_d, sbom = self.artifact(SBOM, b"sbom", annotations={"org.example.kind": "sbom",
                                                                 "org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
        r = self.c.put_manifest(self.repo, sbom_d, sbom)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.header("OCI-Subject"), self.subject)
        self.assertEqual(r.header("Docker-Content-Digest"), sbom_d)
        # artifactType from config.mediaType when the field is absent
        sig_d, sig = self.artifact(SIG, b"signature", in_field=False)
        r = self.c.put_manifest(self.repo, sig_d, sig)
        self.assertEqual((r.status, r.header("OCI-Subject")), (201, self.subject))

        r = self.referrers(self.subject)
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(r.header("Content-Type").startswith(OCI_INDEX), r.header("Content-Type"))
        self.assertIsNone(r.header("OCI-Filters-Applied"))
        idx = r.json()
        self.assertEqual((idx["schemaVersion"], idx["mediaType"]), (2, OCI_INDEX))
        by = {m["digest"]: m for m in idx["manifests"]}
        self.assertEqual(set(by), {sbom_d, sig_d})
        self.assertEqual(by[sbom_d], {"mediaType": OCI_MANIFEST, "digest": sbom_d, "size": len(sbom),
                                      "artifactType": SBOM,
                                      "annotations": {"org.example.kind": "sbom",
                                                      "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}})
        self.assertEqual(by[sig_d]["artifactType"], SIG)
        self.assertEqual(by[sig_d]["size"], len(sig))
        self.assertNotIn("annotations", by[sig_d])

        # ?artifactType= filters, and says so
        r = self.referrers(self.subject, "?artifactType=" + urllib.parse.quote(SBOM, safe=""))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("OCI-Filters-Applied"), "artifactType")
        self.assertEqual([m["digest"] for m in r.json()["manifests"]], [sbom_d])
        r = self.referrers(self.subject, "?artifactType=application/vnd.nothing")
        self.assertEqual((r.status, r.json()["manifests"]), (200, []))
        self.assertEqual(r.header("OCI-Filters-Applied"), "artifactType")

        # the referrer itself is an ordinary manifest
        m = self.c.get_manifest(self.repo, sbom_d)
        self.assertEqual((m.status, m.body), (200, sbom))

    def test_unknown_subject_or_repo_is_an_empty_index(self):
        for repo, subject in ((self.repo, sha256_digest(b"no such manifest")),
                              ("ref/never-pushed", self.subject)):
            r = self.c.req("GET", f"/v2/{repo}/referrers/{subject}")
            self.assertEqual(r.status, 200, (repo, r.body))
            self.assertTrue(r.header("Content-Type").startswith(OCI_INDEX))
            self.assertEqual(r.json(), {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})

    def test_referrer_pushed_before_its_subject(self):
        # A subject need not exist when its referrer is pushed (OCI 1.1).
        later = sha256_digest(b"a manifest pushed later")
        d, body = self.artifact(SBOM, b"early sbom", subject=later)
        r = self.c.put_manifest(self.repo, d, body)
        self.assertEqual((r.status, r.header("OCI-Subject")), (201, later))
        r = self.referrers(later)
        self.assertEqual([m["digest"] for m in r.json()["manifests"]], [d])

    def test_referrers_bad_digest(self):
        r = self.referrers("sha256:abc")
        self.assertEqual((r.status, oci_error_codes(r)), (400, ["DIGEST_INVALID"]))


class Pagination(SharedOutpostCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c = Client(cls.op.url)
        cls.repos = sorted(["pg/a", "pg/b", "pg/b/c", "pg/c", "pg-z"])
        for i, repo in enumerate(cls.repos):
            d, _ = cls.c.push_image(repo, "first", [f"layer {i}".encode()])
        cls.tags = sorted(["1.0", "1.1", "2.0", "latest", "v-9", "A_upper", "z"])
        cls.tag_repo = "pg/a"
        _, body = cls.c.push_image(cls.tag_repo, None, [b"tagged"])
        for t in cls.tags:
            r = cls.c.put_manifest(cls.tag_repo, t, body)
            assert r.status == 201, r.body
        cls.tags = sorted(cls.tags + ["first"])

    def walk(self, first: str, key: str, n: int) -> list[str]:
        got, path, pages = [], first, 0
        while path is not None:
            r = self.c.req("GET", path)
            self.assertEqual(r.status, 200, (path, r.body))
            items = r.json()[key] or []
            self.assertLessEqual(len(items), n)
            got += items
            path = next_link(r)
            pages += 1
            self.assertLess(pages, 50, "Link headers loop")
            if path is not None:
                self.assertEqual(len(items), n, "a page before the last one is full")
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
                self.assertEqual(q["n"], [str(n)])
                self.assertEqual(q["last"], [items[-1]])
        return got

    def test_tags_list_whole_and_paginated(self):
        r = self.c.req("GET", f"/v2/{self.tag_repo}/tags/list")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"name": self.tag_repo, "tags": self.tags})
        self.assertIsNone(r.header("Link"))
        for n in (1, 2, 3, len(self.tags), len(self.tags) + 5):
            with self.subTest(n=n):
                self.assertEqual(self.walk(f"/v2/{self.tag_repo}/tags/list?n={n}", "tags", n), self.tags)
        r = self.c.req("GET", f"/v2/{self.tag_repo}/tags/list?n=2&last=1.1")
        self.assertEqual(r.json()["tags"], ["2.0", "A_upper"])
        self.assertEqual(next_link(r), f"/v2/{self.tag_repo}/tags/list?n=2&last=A_upper")
        r = self.c.req("GET", f"/v2/{self.tag_repo}/tags/list?last=z")
        self.assertEqual((r.status, r.json()["tags"]), (200, []))
        self.assertIsNone(r.header("Link"))

    def test_catalog_whole_and_paginated(self):
        r = self.c.req("GET", "/v2/_catalog")
        self.assertEqual(r.json(), {"repositories": self.repos})
        self.assertIsNone(r.header("Link"))
        for n in (1, 2, 4, len(self.repos)):
            with self.subTest(n=n):
                self.assertEqual(self.walk(f"/v2/_catalog?n={n}", "repositories", n), self.repos)
        # byte order: "pg-z" < "pg/a" ('-' is 0x2d, '/' is 0x2f)
        r = self.c.req("GET", "/v2/_catalog?n=2&last=pg-z")
        self.assertEqual(r.json()["repositories"], ["pg/a", "pg/b"])
        self.assertIn(next_link(r), ("/v2/_catalog?n=2&last=pg/b", "/v2/_catalog?n=2&last=pg%2Fb"))
        r = self.c.req("GET", "/v2/_catalog?n=2&last=pg/b")
        self.assertEqual(r.json()["repositories"], ["pg/b/c", "pg/c"])
        self.assertIsNone(r.header("Link"))

    def test_bad_n(self):
        for q in ("n=-1", "n=abc", "n=", "n=1e3", "n=99999999999999999999"):
            with self.subTest(q=q):
                r = self.c.req("GET", f"/v2/_catalog?{q}")
                self.assertEqual((r.status, oci_error_codes(r)), (400, ["PAGINATION_NUMBER_INVALID"]))
                r = self.c.req("GET", f"/v2/{self.tag_repo}/tags/list?{q}")
                self.assertEqual((r.status, oci_error_codes(r)), (400, ["PAGINATION_NUMBER_INVALID"]))

    def test_unknown_repository_tags(self):
        r = self.c.req("GET", "/v2/pg/unknown/tags/list")
        self.assertEqual((r.status, oci_error_codes(r)), (404, ["NAME_UNKNOWN"]))


if __name__ == "__main__":
    unittest.main()
