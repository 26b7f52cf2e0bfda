"""Bad input, table-driven (issue 3, item 6; DESIGN.md invariant 4): malformed
repository names and digests, bad ranges, wrong upload offsets, invalid,
dangling, mistyped and oversized manifests, digests that do not match the
bytes, truncated and stalled bodies. Each gets the right OCI error code and
HTTP status, and changes nothing: the catalog, the tags, the blob HEADs and
the files under blobs/ are the same after every case."""

import json
import os
import socket
import unittest

from harness import (DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Outpost,
                     RawConn, http, sha256_digest, wait_until)
from registry_helpers import Client, bad_blob_files, dumps, oci_error_codes, snapshot

REPO = "bad/app"
OTHER = "bad/other"
LIMIT = 4 * 1024 * 1024  # registry.max_manifest_bytes (default)

UNPUSHED = b"bytes that are never stored"
SENT = b"the bytes actually sent"


def server_conn_gone(server_port: int, client_port: int) -> bool:
    """True once the server side of the connection from client_port is
    closed (no ESTABLISHED or CLOSE_WAIT entry in /proc/net/tcp)."""
    want_local, want_remote = f"{server_port:04X}", f"{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if (parts[1].split(":")[1] == want_local and parts[2].split(":")[1] == want_remote
                    and parts[3] in ("01", "08")):
                return False
    return True


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.op = Outpost(config={"server": {"body_timeout": "1s"}}).__enter__()
        c = cls.c = Client(cls.op.url)
        cls.layer = b"layer bytes " * 100
        cls.config = dumps({"architecture": "amd64", "os": "linux"})
        cls.manifest_d, cls.manifest = c.push_image(REPO, "v1", [cls.layer], config=cls.config)
        cls.layer_d, cls.config_d = sha256_digest(cls.layer), sha256_digest(cls.config)
        # A blob that exists in the store but only in another repository.
        cls.foreign_d = c.push_blob(OTHER, b"only in the other repository")
        cls.watch = [(r, d) for r in (REPO, OTHER) for d in
                     (cls.layer_d, cls.config_d, cls.manifest_d, cls.foreign_d,
                      sha256_digest(UNPUSHED), sha256_digest(SENT))]

    @classmethod
    def tearDownClass(cls):
        cls.op.__exit__(None, None, None)

    # -- helpers
    def snap(self):
        s = snapshot(self.c, self.op.root, [REPO, OTHER, "bad/new"], self.watch)
        # A repository without manifests answers tags/list 404 or 200 [];
        # which one is test_failed_push_leaves_repository_unknown's business.
        s["tags"] = {r: t or [] for r, t in s["tags"].items()}
        return s

    def check(self, label, method, path, expect_status, expect_code, headers=None, body=None,
              extra=None):
        """One case: the request gets (status, code) and nothing changes."""
        with self.subTest(label):
            # reads are checked by the tests' own snapshots; writes one by one
            before = self.snap() if method not in ("GET", "HEAD") else None
            r = http(method, self.op.url + path, headers=headers, body=body, timeout=30)
            self.assertEqual(r.status, expect_status, f"{label}: {r.body[:300]!r}")
            if method != "HEAD":
                self.assertEqual(oci_error_codes(r), [expect_code], f"{label}: {r.body[:300]!r}")
                self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), label)
            if extra:
                extra(r)
            if before is not None:
                self.assertEqual(self.snap(), before, f"{label} changed the registry")

    def manifest_with(self, **over) -> bytes:
        m = json.loads(self.manifest)
        m.update(over)
        return dumps(m)

    def upload_at(self, data: bytes) -> str:
        """A session in REPO holding `data`; returns its Location."""
        loc = self.c.start_upload(REPO)
        if data:
            r = http("PATCH", self.op.url + loc, body=data, headers={"Content-Range": f"0-{len(data) - 1}"})
            self.assertEqual(r.status, 202, r.body)
        return loc

    # -- names
    def test_malformed_repository_names(self):
        start = self.snap()
        names = ["Upper/case", "bad/App", "a/../b", "..", "a/./b", "a" * 256, "%2e%2e", "a/%2e%2e/b",
                 "a%2Fb", "a%2fb/c", "-a", "a-", "a_", "a/b_", "a..b", "a@b", "a:b", "a%00b", "a%20b"]
        ok = "a" * 255  # the longest valid name: fine, just unknown
        self.assertEqual(self.c.req("GET", f"/v2/{ok}/tags/list").status, 404)
        d = sha256_digest(SENT)
        for name in names:
            for method, suffix, body in (("GET", "/tags/list", None),
                                         ("GET", "/manifests/v1", None),
                                         ("HEAD", "/manifests/v1", None),
                                         ("PUT", "/manifests/v1", self.manifest),
                                         ("DELETE", "/manifests/v1", None),
                                         ("GET", f"/blobs/{self.layer_d}", None),
                                         ("DELETE", f"/blobs/{self.layer_d}", None),
                                         ("POST", "/blobs/uploads/", None),
                                         ("POST", f"/blobs/uploads/?digest={d}", SENT),
                                         ("POST", f"/blobs/uploads/?mount={self.layer_d}&from={REPO}", None),
                                         ("GET", f"/blobs/uploads/{'0' * 32}", None),
                                         ("GET", f"/referrers/{self.manifest_d}", None)):
                self.check(f"{method} /v2/{name[:40]}{suffix}", method, f"/v2/{name}{suffix}", 400,
                           "NAME_INVALID", body=body,
                           headers={"Content-Type": OCI_MANIFEST} if method == "PUT" else None)
        self.assertEqual(self.snap(), start)
        # a valid target with an invalid mount source is just a fresh upload
        r = self.c.req("POST", f"/v2/{REPO}/blobs/uploads/?mount={self.layer_d}&from=..%2Fescape")
        self.assertEqual(r.status, 202, r.body)

    def test_empty_name_components_are_name_invalid(self):
        for name in ("a//b", "a/", "/a"):
            self.check(f"GET /v2/{name}/tags/list", "GET", f"/v2/{name}/tags/list", 400, "NAME_INVALID")

    def test_empty_name_components_change_nothing(self):
        for name in ("a//b", "a/", "/a"):
            for method, suffix in (("GET", "/tags/list"), ("POST", "/blobs/uploads/"),
                                   ("PUT", "/manifests/v1")):
                with self.subTest(name=name, method=method):
                    before = self.snap()
                    r = http(method, f"{self.op.url}/v2/{name}{suffix}",
                             body=self.manifest if method == "PUT" else None)
                    self.assertEqual((r.status, oci_error_codes(r)), (400, ["NAME_INVALID"]))
                    self.assertEqual(self.snap(), before)

    # -- digests
    def test_malformed_digests(self):
        bad = ["sha256:short", "md5:" + "0" * 32, "sha256:" + "A" * 64, "sha256:" + "Ab" * 32,
               "sha256:" + "0" * 63, "sha256:" + "0" * 65, "sha512:" + "0" * 128, "sha256:", ":" + "0" * 64,
               "sha256:" + "g" * 64, "SHA256:" + "0" * 64, "sha256:" + "0" * 62 + "%00"]
        loc = self.upload_at(b"")
        for d in bad:
            cases = [("GET", f"/v2/{REPO}/blobs/{d}", None),
                     ("HEAD", f"/v2/{REPO}/blobs/{d}", None),
                     ("DELETE", f"/v2/{REPO}/blobs/{d}", None),
                     ("GET", f"/v2/{REPO}/manifests/{d}", None),
                     ("HEAD", f"/v2/{REPO}/manifests/{d}", None),
                     ("DELETE", f"/v2/{REPO}/manifests/{d}", None),
                     ("PUT", f"/v2/{REPO}/manifests/{d}", self.manifest),
                     ("GET", f"/v2/{REPO}/referrers/{d}", None),
                     ("POST", f"/v2/{REPO}/blobs/uploads/?digest={d}", SENT),
                     ("POST", f"/v2/bad/new/blobs/uploads/?mount={d}&from={REPO}", None),
                     ("PUT", f"{loc}?digest={d}", SENT)]
            for method, path, body in cases:
                self.check(f"{method} {path}", method, path, 400, "DIGEST_INVALID", body=body,
                           headers={"Content-Type": OCI_MANIFEST} if "/manifests/" in path else None)
        # a malformed escape in ?digest= is a bad digest, not a missing one
        # (which made an empty session and dropped the body)
        self.check("POST ?digest=%G0", "POST", f"/v2/{REPO}/blobs/uploads/?digest=%G0", 400, "DIGEST_INVALID",
                   body=SENT)
        # the session survived every bad PUT untouched
        s = http("GET", self.op.url + loc)
        self.assertEqual((s.status, s.header("Range")), (204, "0-0"))
        r = http("PUT", f"{self.op.url}{loc}", body=SENT)
        self.assertEqual((r.status, oci_error_codes(r)), (400, ["DIGEST_INVALID"]))  # no ?digest= at all

    # -- ranges
    def test_unsatisfiable_ranges(self):
        n = len(self.layer)
        for rng in (f"bytes={n}-", f"bytes={n}-{n + 10}", f"bytes={n + 100}-{n + 200}", "bytes=-0"):
            self.check(f"Range {rng}", "GET", f"/v2/{REPO}/blobs/{self.layer_d}", 416, "RANGE_INVALID",
                       headers={"Range": rng},
                       extra=lambda r: self.assertEqual(r.header("Content-Range"), f"bytes */{n}"))
        # satisfiable ones, for contrast
        r = self.c.req("GET", f"/v2/{REPO}/blobs/{self.layer_d}", headers={"Range": "bytes=10-19"})
        self.assertEqual((r.status, r.body), (206, self.layer[10:20]))
        self.assertEqual(r.header("Content-Range"), f"bytes 10-19/{n}")
        r = self.c.req("GET", f"/v2/{REPO}/blobs/{self.layer_d}", headers={"Range": f"bytes={n - 5}-{n + 50}"})
        self.assertEqual((r.status, r.body), (206, self.layer[-5:]))
        r = self.c.req("GET", f"/v2/{REPO}/blobs/{self.layer_d}", headers={"Range": "bytes=-7"})
        self.assertEqual((r.status, r.body), (206, self.layer[-7:]))

    # -- uploads
    def test_wrong_upload_offsets(self):
        loc = self.upload_at(b"12345")
        cases = [("ahead", "PATCH", "10-14", b"abcde"),
                 ("replayed", "PATCH", "0-4", b"abcde"),
                 ("overlap", "PATCH", "3-7", b"abcde"),
                 ("malformed", "PATCH", "five-nine", b"abcde"),
                 ("reversed", "PATCH", "9-5", b"abcde"),
                 ("length mismatch", "PATCH", "5-9", b"abc"),
                 ("final PUT ahead", "PUT", "7-9", b"abc")]
        for label, method, cr, body in cases:
            path = loc + (f"?digest={sha256_digest(b'12345' + body)}" if method == "PUT" else "")
            self.check(label, method, path, 416, "RANGE_INVALID", body=body,
                       headers={"Content-Range": cr},
                       extra=lambda r: (self.assertEqual(r.header("Range"), "0-4"),
                                        self.assertEqual(r.header("Location"), loc)))
            s = http("GET", self.op.url + loc)
            self.assertEqual((s.status, s.header("Range")), (204, "0-4"), label)
        # still resumable from the right offset
        r = http("PUT", f"{self.op.url}{loc}?digest={sha256_digest(b'1234567')}", body=b"67",
                 headers={"Content-Range": "5-6"})
        self.assertEqual(r.status, 201, r.body)

    def test_unknown_or_foreign_upload_sessions(self):
        loc = self.upload_at(b"abc")
        uuid = loc.rsplit("/", 1)[1]
        for label, path in (("unknown", f"/v2/{REPO}/blobs/uploads/{'0' * 32}"),
                            ("malformed", f"/v2/{REPO}/blobs/uploads/not-an-id"),
                            ("traversal", f"/v2/{REPO}/blobs/uploads/..%2F..%2Fmeta.db"),
                            ("uppercase", f"/v2/{REPO}/blobs/uploads/{uuid.upper()}"),
                            ("other repo", f"/v2/{OTHER}/blobs/uploads/{uuid}")):
            for method, body in (("GET", None), ("PATCH", b"xyz"), ("DELETE", None)):
                self.check(f"{label} {method}", method, path, 404, "BLOB_UPLOAD_UNKNOWN", body=body)
            self.check(f"{label} PUT", "PUT", f"{path}?digest={sha256_digest(b'abc')}", 404,
                       "BLOB_UPLOAD_UNKNOWN")
        s = http("GET", self.op.url + loc)
        self.assertEqual((s.status, s.header("Range")), (204, "0-2"))

    def test_digest_mismatch_publishes_nothing(self):
        wrong = sha256_digest(UNPUSHED)
        # chunked session closed with a digest the bytes do not have
        loc = self.upload_at(SENT[:5])
        self.check("PUT ?digest= mismatch", "PUT", f"{loc}?digest={wrong}", 400, "DIGEST_INVALID",
                   body=SENT[5:])
        # the failed session is gone (as in CNCF distribution): start again
        s = http("GET", self.op.url + loc)
        self.assertEqual((s.status, oci_error_codes(s)), (404, ["BLOB_UPLOAD_UNKNOWN"]))
        # monolithic POST ?digest= mismatch
        self.check("POST ?digest= mismatch", "POST", f"/v2/{REPO}/blobs/uploads/?digest={wrong}",
                   400, "DIGEST_INVALID", body=SENT)
        self.check("POST ?digest= mismatch, new repo", "POST", f"/v2/bad/new/blobs/uploads/?digest={wrong}",
                   400, "DIGEST_INVALID", body=SENT)

    def test_failed_push_leaves_repository_unknown(self):
        self.assertIsNone(self.c.tags("bad/never"))
        r = self.c.req("POST", f"/v2/bad/never/blobs/uploads/?digest={sha256_digest(UNPUSHED)}", body=SENT)
        self.assertEqual((r.status, oci_error_codes(r)), (400, ["DIGEST_INVALID"]))
        self.assertNotIn("bad/never", self.c.catalog())
        r = self.c.req("GET", "/v2/bad/never/tags/list")
        self.assertEqual((r.status, oci_error_codes(r)), (404, ["NAME_UNKNOWN"]))

    def test_attempts_that_store_nothing_leave_repository_unknown(self):
        """Every way to touch a repository without storing anything in it:
        it stays NAME_UNKNOWN until a blob or manifest lands."""
        repo = "bad/attempts"

        def unknown(label):
            r = self.c.req("GET", f"/v2/{repo}/tags/list")
            self.assertEqual((r.status, oci_error_codes(r)), (404, ["NAME_UNKNOWN"]), label)
            self.assertNotIn(repo, self.c.catalog(), label)

        unknown("at first")
        loc = self.c.start_upload(repo)  # an open session alone
        unknown("open upload session")
        r = http("PATCH", self.op.url + loc, body=SENT, headers={"Content-Range": f"0-{len(SENT) - 1}"})
        self.assertEqual(r.status, 202, r.body)
        unknown("session holding bytes")
        self.assertEqual(http("DELETE", self.op.url + loc).status, 204)
        unknown("cancelled session")
        # a mount whose source cannot provide the blob falls back to a plain session
        r = self.c.req("POST", f"/v2/{repo}/blobs/uploads/?mount={sha256_digest(UNPUSHED)}&from={REPO}")
        self.assertEqual(r.status, 202, r.body)
        unknown("failed mount")
        r = self.c.put_manifest(repo, "v1", self.manifest)  # its blobs are not in this repository
        self.assertEqual((r.status, oci_error_codes(r)), (400, ["MANIFEST_BLOB_UNKNOWN"]))
        unknown("failed manifest PUT")
        r = self.c.put_manifest(repo, "v1", b"{not json")
        self.assertEqual((r.status, oci_error_codes(r)), (400, ["MANIFEST_INVALID"]))
        unknown("invalid manifest PUT")
        # the first stored blob makes it a repository (no tags yet)
        self.c.push_blob(repo, SENT)
        self.assertEqual(self.c.tags(repo), [])

    # -- manifests
    def test_bad_manifests(self):
        unknown = sha256_digest(UNPUSHED)
        man = json.loads(self.manifest)
        layer_desc = man["layers"][0]
        good_index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": self.manifest_d, "size": len(self.manifest)}]})
        cases = [
            ("not JSON", b"{not json", OCI_MANIFEST, "MANIFEST_INVALID"),
            ("empty body", b"", OCI_MANIFEST, "MANIFEST_INVALID"),
            ("JSON array", b"[]", OCI_MANIFEST, "MANIFEST_INVALID"),
            ("schemaVersion 1", self.manifest_with(schemaVersion=1), OCI_MANIFEST, "MANIFEST_INVALID"),
            ("no schemaVersion", dumps({k: v for k, v in man.items() if k != "schemaVersion"}), OCI_MANIFEST,
             "MANIFEST_INVALID"),
            ("no config", dumps({k: v for k, v in man.items() if k != "config"}), OCI_MANIFEST,
             "MANIFEST_INVALID"),
            ("layers not an array", self.manifest_with(layers={}), OCI_MANIFEST, "MANIFEST_INVALID"),
            ("short layer digest", self.manifest_with(layers=[{**layer_desc, "digest": "sha256:abc"}]),
             OCI_MANIFEST, "MANIFEST_INVALID"),
            ("negative size", self.manifest_with(layers=[{**layer_desc, "size": -1}]), OCI_MANIFEST,
             "MANIFEST_INVALID"),
            ("descriptor without mediaType",
             self.manifest_with(layers=[{"digest": layer_desc["digest"], "size": layer_desc["size"]}]),
             OCI_MANIFEST, "MANIFEST_INVALID"),
            ("annotation not a string", self.manifest_with(annotations={"a": 1}), OCI_MANIFEST,
             "MANIFEST_INVALID"),
            ("unknown layer", self.manifest_with(layers=[{**layer_desc, "digest": unknown}]), OCI_MANIFEST,
             "MANIFEST_BLOB_UNKNOWN"),
            ("unknown config", self.manifest_with(config={"mediaType": OCI_CONFIG, "digest": unknown,
                                                          "size": 3}), OCI_MANIFEST, "MANIFEST_BLOB_UNKNOWN"),
            ("layer of another repository", self.manifest_with(layers=[{**layer_desc, "digest": self.foreign_d}]),
             OCI_MANIFEST, "MANIFEST_BLOB_UNKNOWN"),
            ("index of an unknown manifest",
             dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                 {"mediaType": OCI_MANIFEST, "digest": unknown, "size": 10}]}), OCI_INDEX,
             "MANIFEST_BLOB_UNKNOWN"),
            # a blob that is not a manifest, listed as an index's child: the pull would 404 on it
            ("index of a plain blob", dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": layer_desc["digest"], "size": layer_desc["size"]}]}),
             OCI_INDEX, "MANIFEST_BLOB_UNKNOWN"),
            # both an index and an image manifest (CVE-2021-41190), whichever way it is typed
            ("index with config and layers", dumps({"schemaVersion": 2, "manifests": [],
                                                    "config": man["config"], "layers": man["layers"]}),
             OCI_INDEX, "MANIFEST_INVALID"),
            ("manifest with a manifests array", self.manifest_with(manifests=[]), OCI_MANIFEST,
             "MANIFEST_INVALID"),
            ("mediaType contradicts Content-Type", self.manifest, OCI_INDEX, "MANIFEST_INVALID"),
            ("index body sent as a manifest", good_index, OCI_MANIFEST, "MANIFEST_INVALID"),
            ("Docker type for an OCI body", self.manifest, DOCKER_MANIFEST, "MANIFEST_INVALID"),
            ("unknown media type", self.manifest_with(mediaType="application/vnd.example.thing+json"),
             "application/vnd.example.thing+json", "MANIFEST_INVALID"),
            ("schema1", self.manifest_with(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws",
                                           schemaVersion=1),
             "application/vnd.docker.distribution.manifest.v1+prettyjws", "MANIFEST_INVALID"),
            ("config type as Content-Type", self.manifest_with(mediaType=OCI_CONFIG), OCI_CONFIG,
             "MANIFEST_INVALID"),
            # a Content-Type that is not the body's mediaType (issue 13, item 2)
            ("text/plain for an OCI body", self.manifest, "text/plain", "MANIFEST_INVALID"),
            ("application/json for an OCI body", self.manifest, "application/json", "MANIFEST_INVALID"),
            ("octet-stream for an OCI body", self.manifest, "application/octet-stream", "MANIFEST_INVALID"),
            ("text/plain, body without mediaType", dumps({k: v for k, v in man.items() if k != "mediaType"}),
             "text/plain", "MANIFEST_INVALID"),
        ]
        for label, body, ct, code in cases:
            for ref in ("bad-tag", sha256_digest(body)):
                self.check(f"{label} -> {ref[:12]}", "PUT", f"/v2/{REPO}/manifests/{ref}", 400, code, body=body,
                           headers={"Content-Type": ct})
            self.check(f"{label} -> new repo", "PUT", "/v2/bad/new/manifests/t", 400, code, body=body,
                       headers={"Content-Type": ct})

    def test_manifest_content_type_forms_clients_send(self):
        """What skopeo/podman, docker and oras send must keep working: the
        manifest's own type, possibly with parameters, or nothing at all."""
        man = json.loads(self.manifest)
        bare = dumps({k: v for k, v in man.items() if k != "mediaType"})
        docker = dumps({**man, "mediaType": DOCKER_MANIFEST,
                        "config": {**man["config"], "mediaType": "application/vnd.docker.container.image.v1+json"},
                        "layers": [{**l, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
                                   for l in man["layers"]]})
        cases = [
            ("OCI type with a charset parameter", self.manifest_with(annotations={"ct": "charset"}),
             OCI_MANIFEST + "; charset=utf-8", OCI_MANIFEST),
            ("no Content-Type, OCI body", self.manifest_with(annotations={"ct": "none"}), None, OCI_MANIFEST),
            ("no Content-Type, Docker schema2 body", docker, None, DOCKER_MANIFEST),
            ("Docker type, Docker body", dumps({**json.loads(docker), "annotations": {"ct": "docker"}}),
             DOCKER_MANIFEST, DOCKER_MANIFEST),
            ("OCI type, body without mediaType", bare, OCI_MANIFEST, OCI_MANIFEST),
        ]
        for label, body, ct, stored in cases:
            with self.subTest(label):
                d = sha256_digest(body)
                r = self.c.req("PUT", f"/v2/{REPO}/manifests/{d}", body=body,
                               headers={"Content-Type": ct} if ct else {})
                self.assertEqual(r.status, 201, f"{label}: {r.body[:300]!r}")
                g = self.c.req("GET", f"/v2/{REPO}/manifests/{d}")
                self.assertEqual((g.status, g.header("Content-Type"), g.body), (200, stored, body))
                self.assertEqual(self.c.req("DELETE", f"/v2/{REPO}/manifests/{d}").status, 202)

    # -- deletes
    def test_deleting_referenced_content_is_unsupported(self):
        """A blob a manifest uses, or a manifest an index lists, is not
        deleted: 405 UNSUPPORTED (the spec's answer for a refused delete, not
        DENIED, which means an authorization failure), naming the user."""
        repo = "bad/del"
        layer = b"a layer only bad/del has"
        man_d, man = self.c.push_image(repo, "v1", [layer])
        layer_d = sha256_digest(layer)
        index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": man_d, "size": len(man)}]})
        index_d = sha256_digest(index)
        self.assertEqual(self.c.put_manifest(repo, "multi", index, OCI_INDEX).status, 201)

        def refused(path, user):
            r = self.c.req("DELETE", path)
            self.assertEqual((r.status, oci_error_codes(r)), (405, ["UNSUPPORTED"]), r.body)
            self.assertIn(user, r.json()["errors"][0]["detail"])

        refused(f"/v2/{repo}/blobs/{layer_d}", man_d)       # blobs first, as some teardowns do
        refused(f"/v2/{repo}/manifests/{man_d}", index_d)
        self.assertEqual(self.c.head_blob(repo, layer_d), 200)
        self.assertEqual(self.c.get_manifest(repo, man_d).status, 200)
        self.assertEqual(sorted(self.c.tags(repo)), ["multi", "v1"])
        # top down, everything goes
        self.assertEqual(self.c.req("DELETE", f"/v2/{repo}/manifests/{index_d}").status, 202)
        self.assertEqual(self.c.req("DELETE", f"/v2/{repo}/manifests/{man_d}").status, 202)
        self.assertEqual(self.c.req("DELETE", f"/v2/{repo}/blobs/{layer_d}").status, 202)
        self.assertEqual(self.c.head_blob(repo, layer_d), 404)

    def test_manifest_digest_and_tag_mismatch(self):
        body = self.manifest_with(annotations={"x": "y"})
        self.check("PUT by digest of other bytes", "PUT", f"/v2/{REPO}/manifests/{sha256_digest(UNPUSHED)}",
                   400, "DIGEST_INVALID", body=body, headers={"Content-Type": OCI_MANIFEST})
        for tag in ("-leading-dash", ".dot", "a" * 129, "t%2Fx", "t@x"):
            self.check(f"tag {tag[:20]}", "PUT", f"/v2/{REPO}/manifests/{tag}", 400, "TAG_INVALID", body=body,
                       headers={"Content-Type": OCI_MANIFEST})
        self.assertEqual(self.c.put_manifest(REPO, "t" * 128, body).status, 201)  # the longest tag is fine
        r = self.c.req("DELETE", f"/v2/{REPO}/manifests/{'t' * 128}")
        self.assertEqual(r.status, 202, r.body)

    def test_oversized_manifests(self):
        pad = "x" * (LIMIT + 1 - len(self.manifest_with(annotations={"pad": ""})))
        big = self.manifest_with(annotations={"pad": pad})
        self.assertEqual(len(big), LIMIT + 1)
        self.check("Content-Length over the limit", "PUT", f"/v2/{REPO}/manifests/big", 413, "MANIFEST_INVALID",
                   body=big, headers={"Content-Type": OCI_MANIFEST})
        # chunked: no length up front, refused once the limit is crossed
        chunks = [big[i:i + 65536] for i in range(0, len(big), 65536)]
        with self.subTest("chunked over the limit"):
            before = self.snap()
            r = http("PUT", f"{self.op.url}/v2/{REPO}/manifests/big", body=iter(chunks), chunked=True,
                     headers={"Content-Type": OCI_MANIFEST})
            self.assertEqual((r.status, oci_error_codes(r)), (413, ["MANIFEST_INVALID"]))
            self.assertEqual(self.snap(), before)
        # exactly at the limit is accepted
        at = self.manifest_with(annotations={"pad": pad[:-1]})
        self.assertEqual(len(at), LIMIT)
        r = self.c.put_manifest(REPO, "at-limit", at)
        self.assertEqual(r.status, 201, r.body[:300])
        self.assertEqual(self.c.get_manifest(REPO, "at-limit").body, at)
        self.assertEqual(self.c.req("DELETE", f"/v2/{REPO}/manifests/{sha256_digest(at)}").status, 202)

    # -- truncated and stalled bodies
    def truncated(self, label, method, path, total, sent, headers=""):
        """Sends a head announcing `total` body bytes, then only `sent`, then closes."""
        with self.subTest(label):
            before = self.snap()
            sock = socket.create_connection(("127.0.0.1", self.op.port), timeout=10)
            try:
                cport = sock.getsockname()[1]
                sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n{headers}\r\n".encode()
                             + sent)
            finally:
                sock.close()
            wait_until(lambda: server_conn_gone(self.op.port, cport), 10,
                       message=f"outpost to drop the truncated {label} connection")
            self.assertEqual(self.snap(), before, f"{label} changed the registry")

    def test_truncated_bodies(self):
        full = os.urandom(256 * 1024)
        d = sha256_digest(full)
        self.watch.append((REPO, d))
        try:
            uploads = os.path.join(self.op.root, "uploads")
            sessions = set(os.listdir(uploads))
            self.truncated("monolithic POST", "POST", f"/v2/{REPO}/blobs/uploads/?digest={d}", len(full),
                           full[:100000])
            # nobody knows that session's id: it is dropped, not left to expire
            wait_until(lambda: set(os.listdir(uploads)) == sessions, 10,
                       message="the truncated monolithic upload's session to go")
            loc = self.upload_at(b"")
            self.truncated("PATCH", "PATCH", loc, len(full), full[:100000])
            loc2 = self.upload_at(full[:1000])
            self.truncated("final PUT", "PUT", f"{loc2}?digest={d}", len(full) - 1000, full[1000:5000],
                           headers="Content-Range: 1000-%d\r\n" % (len(full) - 1))
            body = self.manifest_with(annotations={"truncated": "yes"})
            self.truncated("manifest PUT", "PUT", f"/v2/{REPO}/manifests/trunc", len(body), body[:len(body) // 2],
                           headers=f"Content-Type: {OCI_MANIFEST}\r\n")
            self.truncated("manifest PUT by digest", "PUT", f"/v2/{REPO}/manifests/{sha256_digest(body)}",
                           len(body), body[:10], headers=f"Content-Type: {OCI_MANIFEST}\r\n")
            # the sessions are still usable from what they durably hold
            s = http("GET", self.op.url + loc2)
            self.assertEqual(s.status, 204)
            have = int(s.header("Range").split("-")[1]) + 1
            r = http("PUT", f"{self.op.url}{loc2}?digest={d}", body=full[have:],
                     headers={"Content-Range": f"{have}-{len(full) - 1}"})
            self.assertEqual(r.status, 201, r.body)
        finally:
            self.watch.pop()

    def test_stalled_body_times_out(self):
        body = self.manifest_with(annotations={"stalled": "yes"})
        before = self.snap()
        with RawConn(self.op.port, timeout=15) as rc:
            rc.send(f"PUT /v2/{REPO}/manifests/stalled HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20])
            r = rc.read_response(timeout=10)  # body_timeout is 1s
            self.assertEqual(r.status, 408)
            self.assertEqual(json.loads(r.body)["errors"][0]["code"], "REQUEST_TIMEOUT")
        loc = self.upload_at(b"")
        with RawConn(self.op.port, timeout=15) as rc:
            rc.send(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b"z" * 10)
            r = rc.read_response(timeout=10)
            self.assertEqual(r.status, 408)
        self.assertEqual(self.snap(), before)
        self.assertEqual(bad_blob_files(self.op.root), [])

    def test_original_image_intact(self):
        # runs last alphabetically among the mutating tests? order does not
        # matter: every case checks its own snapshot; this is the end-to-end view
        m = self.c.get_manifest(REPO, "v1")
        self.assertEqual((m.status, m.body), (200, self.manifest))
        for d in (self.layer_d, self.config_d):
            self.assertEqual(self.c.head_blob(REPO, d), 200)
        self.assertEqual(bad_blob_files(self.op.root), [])


if __name__ == "__main__":
    unittest.main()
