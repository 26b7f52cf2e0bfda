"""Access control on a pull-through Outpost (issue #16): a blob is readable
only through a repository that holds it. Outpost caches a blob for
repository A; a caller allowed to pull repository B (also served from the
parent, which does not hold the blob in B) asks for the same digest in B.
Without [auth] Outpost may answer from its cache (content by digest is the
same); with [auth] on it must ask the parent, which says BLOB_UNKNOWN for
B, and the caller gets 404 with nothing of the blob.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import unittest

from harness import DockerRegistry, Outpost, http, make_oci_layout, push_layout, random_layer, run_outpost


def basic(name: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


class PullThroughScope(unittest.TestCase):
    def test_a_blob_cached_for_one_repository_is_not_served_through_another(self):
        with tempfile.TemporaryDirectory(prefix="auth-pt-") as tmp, DockerRegistry() as parent:
            secret_layer = random_layer(64 * 1024)
            lay = make_oci_layout(os.path.join(tmp, "a"), layers=[secret_layer], tag="v1")
            push_layout(lay, parent.hostport, "secret/app")
            other = make_oci_layout(os.path.join(tmp, "b"), layers=[random_layer(1024)], tag="v1")
            push_layout(other, parent.hostport, "public/app")
            layer_digest = lay.images[0].layer_digests[0]
            cfg = {"parent": {"url": parent.url, "connect_timeout": "2s", "timeout": "10s"},
                   "auth": {"enabled": True}}
            with Outpost(cfg) as op:
                out = run_outpost("token", "create", "site", "--scope", "secret/**:pull", "--json",
                                  "--config", op.config_path)
                self.assertEqual(out.returncode, 0, out.stderr)
                site = json.loads(out.stdout)["secret"]
                out = run_outpost("token", "create", "line", "--scope", "public/**:pull", "--json",
                                  "--config", op.config_path)
                self.assertEqual(out.returncode, 0, out.stderr)
                line = json.loads(out.stdout)["secret"]
                # The blob is cached for secret/app by a caller allowed there.
                r = http("GET", f"{op.url}/v2/secret/app/blobs/{layer_digest}", headers=basic("site", site))
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, lay.blobs[layer_digest])
                # Through public/app (which the parent does not hold it in):
                # nothing of the blob, whatever the method.
                for method in ("GET", "HEAD"):
                    with self.subTest(method=method):
                        r = http(method, f"{op.url}/v2/public/app/blobs/{layer_digest}", headers=basic("line", line))
                        self.assertEqual(r.status, 404, r.body[:200])
                        self.assertNotIn(lay.blobs[layer_digest][:64], r.body)
                        self.assertNotIn("Docker-Content-Digest", {k.title() for k in r.headers})
                # public/app's own blobs still come through.
                own = other.images[0].layer_digests[0]
                r = http("GET", f"{op.url}/v2/public/app/blobs/{own}", headers=basic("line", line))
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, other.blobs[own])


class NamespaceScope(unittest.TestCase):
    def test_ns_query_is_checked_on_the_repository_it_reads(self):
        """?ns=<upstream> serves "<ns>/<name>": access is checked there, not on
        {name} (a token for app/** read mirror/app/** by spelling it
        /v2/app/...?ns=mirror, and so did anonymous_pull)."""
        with tempfile.TemporaryDirectory(prefix="auth-ns-") as tmp, DockerRegistry() as mirror:
            lay = make_oci_layout(os.path.join(tmp, "a"), layers=[random_layer(4096)], tag="v1")
            push_layout(lay, mirror.hostport, "app/core")
            layer_digest = lay.images[0].layer_digests[0]
            cfg = {"upstream": [{"name": "mirror", "url": mirror.url, "connect_timeout": "2s", "timeout": "10s"}],
                   "auth": {"enabled": True, "anonymous_pull": ["app/**"]}}
            with Outpost(cfg) as op:
                def token(name, scope):
                    out = run_outpost("token", "create", name, "--scope", scope, "--json", "--config", op.config_path)
                    self.assertEqual(out.returncode, 0, out.stderr)
                    return json.loads(out.stdout)["secret"]
                lib, site = token("lib", "app/**:pull"), token("site", "mirror/**:pull")
                paths = [f"/v2/app/core/manifests/v1?ns=mirror", f"/v2/app/core/blobs/{layer_digest}?ns=mirror"]
                for path in paths:
                    with self.subTest(path=path):
                        r = http("GET", op.url + path, headers=basic("lib", lib))
                        self.assertEqual(r.status, 403, r.body[:200])
                        self.assertNotIn(lay.blobs[layer_digest][:64], r.body)
                        r = http("GET", op.url + path)  # anonymous_pull covers app/**, not mirror/**
                        self.assertEqual(r.status, 401, r.body[:200])
                        self.assertNotIn(lay.blobs[layer_digest][:64], r.body)
                # a caller allowed where the content lives reads it either way
                r = http("GET", f"{op.url}/v2/app/core/blobs/{layer_digest}?ns=mirror", headers=basic("site", site))
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, lay.blobs[layer_digest])
                r = http("GET", f"{op.url}/v2/mirror/app/core/blobs/{layer_digest}", headers=basic("site", site))
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, lay.blobs[layer_digest])
                # writes and listings act on {name} itself, ?ns= or not: checked there
                pusher = token("pusher", "mirror/**:pull,push")
                r = http("POST", f"{op.url}/v2/app/core/blobs/uploads/?ns=mirror", headers=basic("pusher", pusher))
                self.assertEqual(r.status, 403, r.body[:200])
                r = http("GET", f"{op.url}/v2/other/core/tags/list?ns=mirror", headers=basic("site", site))
                self.assertEqual(r.status, 403, r.body[:200])  # lists other/core, not mirror/other/core
