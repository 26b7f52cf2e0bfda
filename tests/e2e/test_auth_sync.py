"""Sync tokens (issue #16): a child Outpost pulls and replays through a
parent Outpost that requires credentials. The child presents its
parent.token_file credentials (Basic, then the token flow) and its instance
id (Outpost-Instance, kept in its store root); the parent checks the token's
scope like any client token's and binds the token to the first instance it
sees. A second child with the same token is refused until
`outpost token deactivate NAME` on the parent.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tempfile
import unittest

from harness import ACCEPT_ALL_MANIFESTS, Outpost, http, make_oci_layout, random_layer, run_outpost, \
    skopeo_copy, wait_until
from sync_helpers import CLOSED, manifest_digest, requires_sync, sync_config, sync_now


def basic(name: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def token(op: Outpost, *args: str) -> dict:
    p = run_outpost("token", *args, "--json", "--config", op.config_path)
    if p.returncode != 0:
        raise AssertionError(f"outpost token {args}: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout)


@requires_sync
class SyncTokenChain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="auth-sync-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        tmp = cls.tmp = cls._tmp.name
        cls.parent = Outpost(config={"auth": {"enabled": True}}).__enter__()
        cls.addClassCleanup(cls.parent.__exit__, None, None, None)
        cls.admin = token(cls.parent, "create", "admin", "--scope", "**:*")["secret"]
        site = token(cls.parent, "create", "site", "--scope", "site/**:pull,push")["secret"]
        cls.token_file = os.path.join(tmp, "sync-token")
        with open(cls.token_file, "w") as f:
            f.write(f"site:{site}\n")
        host = f"127.0.0.1:{cls.parent.port}"
        cls.base = make_oci_layout(os.path.join(tmp, "base"), tag="1", layers=[random_layer(8192, seed=171)])
        cls.other = make_oci_layout(os.path.join(tmp, "other"), tag="1", layers=[random_layer(4096, seed=172)])
        for repo, lay in (("site/base", cls.base), ("secret/x", cls.base), ("site/later", cls.other)):
            skopeo_copy(lay.ref, f"docker://{host}/{repo}:1", "--dest-creds", f"admin:{cls.admin}")
        cls.child1 = cls._child()

    @classmethod
    def _child(cls) -> Outpost:
        op = Outpost(config=sync_config(cls.parent.url, "ReadWrite", CLOSED,
                                        parent={"token_file": cls.token_file})).__enter__()
        cls.addClassCleanup(op.__exit__, None, None, None)
        return op

    def parent_has(self, repo: str, tag: str) -> tuple[int, str | None]:
        r = http("GET", f"{self.parent.url}/v2/{repo}/manifests/{tag}",
                 headers=dict(basic("admin", self.admin), Accept=ACCEPT_ALL_MANIFESTS))
        return r.status, r.header("Docker-Content-Digest")

    def test_1_child_reads_and_replays_inside_the_sync_tokens_scope(self):
        st, d, _ = manifest_digest(self.child1.url, "site/base", "1")
        self.assertEqual((st, d), (200, self.base.top_digest))
        # outside the token's scope: the parent refuses, the child serves nothing
        st, _, body = manifest_digest(self.child1.url, "secret/x", "1")
        self.assertNotEqual(st, 200, body)
        # a push at the child is replayed into the parent with the sync token
        app = make_oci_layout(os.path.join(self.tmp, "app"), tag="1", layers=[random_layer(4096, seed=173)])
        skopeo_copy(app.ref, f"docker://127.0.0.1:{self.child1.port}/site/app:1")
        self.assertEqual(self.parent_has("site/app", "1")[0], 404)
        sync_now(self.child1, wait=True)
        self.assertEqual(self.parent_has("site/app", "1"), (200, app.top_digest))
        # a push outside the token's scope stays at the child: the parent refuses its replay
        other = make_oci_layout(os.path.join(self.tmp, "outside"), tag="1", layers=[random_layer(2048, seed=174)])
        skopeo_copy(other.ref, f"docker://127.0.0.1:{self.child1.port}/other/app:1")
        sync_now(self.child1, wait=False)
        wait_until(lambda: re.search(r"path=/v2/other/app/\S* status=403", self.parent.log_text()),
                   timeout=30, message="the parent refuses the out-of-scope replay with 403")
        self.assertEqual(self.parent_has("other/app", "1")[0], 404)
        # the child's instance id is on disk and the token is bound to it
        with open(os.path.join(self.child1.root, "instance-id")) as f:
            inst = f.read().strip()
        shown = token(self.parent, "show", "site")["token"]
        self.assertEqual(shown["instance"], inst)

    def test_2_a_second_child_is_refused_until_deactivated(self):
        child2 = self._child()
        st, _, body = manifest_digest(child2.url, "site/base", "1")
        print(f"# second child's client sees {st} {body[:300]!r}", file=sys.stderr)
        self.assertNotEqual(st, 200, body)
        self.assertIn(b"outpost token deactivate site", body)  # the parent's words, relayed
        self.assertIn("bound to another instance", self.parent.log_text())
        out = token(self.parent, "deactivate", "site")
        self.assertEqual(out["token"]["instance"], "")
        wait_until(lambda: manifest_digest(child2.url, "site/base", "1")[:2] == (200, self.base.top_digest),
                   timeout=30, message="the second child pulls once the token is deactivated")
        with open(os.path.join(child2.root, "instance-id")) as f:
            self.assertEqual(token(self.parent, "show", "site")["token"]["instance"], f.read().strip())
        # and now the first child is the one refused (on something it does not hold)
        st, _, body = manifest_digest(self.child1.url, "site/later", "1")
        self.assertNotEqual(st, 200, body)


if __name__ == "__main__":
    unittest.main()
