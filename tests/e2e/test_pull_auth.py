"""Upstream auth and redirects (faulty_upstream.FakeRegistry, StorageServer,
TokenServer):

- Basic: the parent answers 401 + `WWW-Authenticate: Basic`; Outpost sends
  the token_file's "username:password" and the pull works;
- Bearer token flow: 401 + `WWW-Authenticate: Bearer realm=...,service=...,
  scope=...` -> the token endpoint (Basic credentials from token_file,
  service and scope in the query) -> `{"token": ..., "expires_in": 300}`;
  the parent accepts only that token; the token endpoint is asked once for
  a whole pull (the token is cached);
- blob GETs 307-redirected to a storage host on another port: the pull
  works and the storage host never sees an Authorization header;
- bad credentials: a clear error, not a hang.
"""

import base64
import filecmp
import json
import os
import tempfile
import unittest

from faulty_upstream import FakeRegistry, StorageServer, TokenServer
from harness import ACCEPT_ALL_MANIFESTS, Outpost, http, make_oci_layout, sha256_digest, skopeo_copy

REPO = "e2e/auth"
USER, PASSWORD = "sync-robot", "s3cret:with:colons"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def layout_blobs(path: str) -> set[str]:
    return set(os.listdir(os.path.join(path, "blobs", "sha256")))


class UpstreamAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="pull-auth-")
        cls.tmp = cls._tmp.name
        cls.lay = make_oci_layout(os.path.join(cls.tmp, "src"),
                                  layers=[{"a.txt": b"auth layer\n"}, os.urandom(1 << 20)], tag="v1",
                                  platforms=[("linux", "amd64"), ("linux", "arm64")])
        cls.blob_digests = sorted({d for im in cls.lay.images for d in [im.config_digest, *im.layer_digests]})
        cls.token_file = os.path.join(cls.tmp, "sync-token")
        with open(cls.token_file, "w") as f:
            f.write(f"{USER}:{PASSWORD}\n")

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def outpost(self, parent_url: str, token_file: str | None = None) -> Outpost:
        parent = {"url": parent_url, "timeout": "10s", "connect_timeout": "2s"}
        if token_file:
            parent["token_file"] = token_file
        return Outpost(config={"parent": parent, "cache": {"tag_ttl": "1h"}})

    def pull(self, op: Outpost) -> str:
        out = tempfile.mkdtemp(prefix="out-", dir=self.tmp)
        skopeo_copy(f"docker://{op.host}:{op.port}/{REPO}:v1", f"oci:{out}:v1", "--all", "--preserve-digests",
                    timeout=120)
        self.assertEqual(layout_blobs(out), layout_blobs(self.lay.path))
        _m, mismatch, errors = filecmp.cmpfiles(os.path.join(self.lay.path, "blobs", "sha256"),
                                                os.path.join(out, "blobs", "sha256"),
                                                sorted(layout_blobs(out)), shallow=False)
        self.assertEqual((mismatch, errors), ([], []))
        return out

    def assert_blob_gets_authorized(self, fake: FakeRegistry, expect: str):
        """Every blob GET the parent answered (not with 401) carried `expect`."""
        for d in self.blob_digests:
            seen = fake.requests("GET", f"/v2/{REPO}/blobs/{d}")
            self.assertTrue(seen, f"parent never asked for {d}")
            self.assertIn(expect, [s.header("Authorization") for s in seen], d)

    # ------------------------------------------------------------------
    def test_basic_auth(self):
        with FakeRegistry(auth=("basic", USER, PASSWORD)) as fake:
            fake.add_layout(REPO, self.lay)
            with self.outpost(fake.url, self.token_file) as op:
                self.pull(op)
            self.assert_blob_gets_authorized(fake, BASIC)
            # Basic is remembered: at most the first request went without
            # credentials (the connectivity probe, GET /v2/ before serving
            # since issue #15, never carries any)
            bare = [s for s in fake.requests() if s.header("Authorization") is None and s.path != "/v2/"]
            self.assertLessEqual(len(bare), 1, [(s.method, s.path) for s in bare])

    def test_bearer_token_flow_token_cached(self):
        with TokenServer(USER, PASSWORD, token="tok-abc-123", expires_in=300) as ts, \
                FakeRegistry(auth=("bearer", ts.realm, "test", "tok-abc-123")) as fake:
            fake.add_layout(REPO, self.lay)
            with self.outpost(fake.url, self.token_file) as op:
                self.pull(op)
                # more requests, same scope: still the one token
                for d in self.blob_digests:
                    http("GET", f"{op.url}/v2/{REPO}/blobs/{d}")  # local now
                im = self.lay.images[0]
                r = http("GET", f"{op.url}/v2/{REPO}/manifests/{im.manifest_digest}",
                         headers={"Accept": ACCEPT_ALL_MANIFESTS})
                self.assertEqual(r.status, 200)
            self.assertEqual(ts.count("GET", "/token"), 1,
                             [(s.path, s.query) for s in ts.requests()])
            t = ts.requests()[0]
            self.assertEqual(t.query.get("service"), ["test"])
            self.assertEqual(t.query.get("scope"), [f"repository:{REPO}:pull"])
            self.assert_blob_gets_authorized(fake, "Bearer tok-abc-123")
            # only the first request to the parent went without the token
            # (the probe, GET /v2/, never carries one)
            unauth = [s for s in fake.requests()
                      if s.header("Authorization") != "Bearer tok-abc-123" and s.path != "/v2/"]
            self.assertEqual(len(unauth), 1, [(s.method, s.path, s.header("Authorization")) for s in unauth])
            # the token server got Basic credentials, the parent never did
            self.assertTrue(t.header("Authorization") or "".startswith("Basic "))
            self.assertFalse(any((s.header("Authorization") or "").startswith("Basic") for s in fake.requests()))

    def test_rejected_token_is_fetched_again(self):
        """The parent stops accepting the cached token (rotated): the next
        request gets 401, Outpost asks the token endpoint again and retries."""
        with TokenServer(USER, PASSWORD, token="tok-1") as ts, \
                FakeRegistry(auth=("bearer", ts.realm, "test", "tok-1")) as fake:
            fake.add_layout(REPO, self.lay)
            with self.outpost(fake.url, self.token_file) as op:
                d1, d2 = self.blob_digests[0], self.blob_digests[1]
                r = http("GET", f"{op.url}/v2/{REPO}/blobs/{d1}")
                self.assertEqual((r.status, sha256_digest(r.body)), (200, d1))
                self.assertEqual(ts.count("GET", "/token"), 1)
                ts.token = "tok-2"
                fake.auth = ("bearer", ts.realm, "test", "tok-2")
                r = http("GET", f"{op.url}/v2/{REPO}/blobs/{d2}", timeout=30)
                self.assertEqual((r.status, sha256_digest(r.body)), (200, d2))
                self.assertEqual(ts.count("GET", "/token"), 2)
                r = http("GET", f"{op.url}/v2/{REPO}/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
                self.assertEqual(r.status, 200)
                self.assertEqual(ts.count("GET", "/token"), 2)

    def test_access_token_field(self):
        """OAuth2-style token servers answer "access_token" instead of "token"."""
        with TokenServer(USER, PASSWORD, token="oauth-tok", field_name="access_token") as ts, \
                FakeRegistry(auth=("bearer", ts.realm, "test", "oauth-tok")) as fake:
            fake.add_layout(REPO, self.lay)
            with self.outpost(fake.url, self.token_file) as op:
                self.pull(op)
            self.assertEqual(ts.count("GET", "/token"), 1)

    def test_bad_credentials_give_an_error(self):
        bad = os.path.join(self.tmp, "bad-token")
        with open(bad, "w") as f:
            f.write(f"{USER}:wrong\n")
        with TokenServer(USER, PASSWORD) as ts, FakeRegistry(auth=("bearer", ts.realm, "test", ts.token)) as fake:
            fake.add_layout(REPO, self.lay)
            with self.outpost(fake.url, bad) as op:
                for path in (f"/v2/{REPO}/manifests/v1", f"/v2/{REPO}/blobs/{self.blob_digests[0]}"):
                    r = http("GET", op.url + path, headers={"Accept": ACCEPT_ALL_MANIFESTS}, timeout=30)
                    self.assertGreaterEqual(r.status, 400, path)
                    self.assertNotEqual(r.status, 404, path)
                    self.assertIn("errors", json.loads(r.body), path)
        with FakeRegistry(auth=("basic", USER, PASSWORD)) as fake:
            fake.add_layout(REPO, self.lay)
            with self.outpost(fake.url, None) as op:  # no credentials at all
                r = http("GET", f"{op.url}/v2/{REPO}/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS},
                         timeout=30)
                self.assertGreaterEqual(r.status, 400)
                self.assertNotEqual(r.status, 404)

    def check_redirected_pull(self, auth_for, expect_auth: str, ts: TokenServer | None = None):
        with StorageServer() as storage:
            with FakeRegistry(auth=auth_for, storage=storage) as fake:
                fake.add_layout(REPO, self.lay)
                for d in self.blob_digests:
                    fake.faults[d] = "redirect"
                with self.outpost(fake.url, self.token_file) as op:
                    self.pull(op)
                self.assert_blob_gets_authorized(fake, expect_auth)
            got = storage.requests("GET")
            self.assertEqual(sorted(s.path for s in got), sorted(f"/storage/{d}" for d in self.blob_digests))
            for s in got:
                self.assertEqual(s.query.get("sig"), ["e2e-signed"], "the signed query must be kept")
                self.assertIsNone(s.header("Authorization"),
                                  f"the storage host got the registry's credentials: {s.header('Authorization')}")
            self.assertEqual([s for s in storage.requests() if s.header("Authorization")], [])

    def test_redirect_to_storage_host_without_basic_credentials(self):
        self.check_redirected_pull(("basic", USER, PASSWORD), BASIC)

    def test_redirect_to_storage_host_without_bearer_token(self):
        with TokenServer(USER, PASSWORD, token="tok-redirect") as ts:
            self.check_redirected_pull(("bearer", ts.realm, "test", "tok-redirect"), "Bearer tok-redirect")
            self.assertEqual(ts.count("GET", "/token"), 1)

    def test_redirect_anonymous(self):
        with StorageServer() as storage, FakeRegistry(storage=storage) as fake:
            fake.add_layout(REPO, self.lay)
            d = self.lay.images[0].layer_digests[0]
            fake.faults[d] = "redirect"
            with self.outpost(fake.url) as op:
                r = http("GET", f"{op.url}/v2/{REPO}/blobs/{d}")
                self.assertEqual((r.status, sha256_digest(r.body)), (200, d))
            self.assertEqual(storage.count("GET", f"/storage/{d}"), 1)


if __name__ == "__main__":
    unittest.main()
