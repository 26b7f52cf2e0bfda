"""SIGHUP reload of upstreams, kept repositories and access control (issue #17).

- the parent changes from A (a purpose-built registry whose blob is held
  half-sent) to B (Debian's docker-registry) by SIGHUP: a blob fill in
  flight from A finishes on A with the right bytes, and skopeo then pulls
  an image only B has through the child; /metrics shows the upstream
  request histogram (parsed strictly) and status the upstream's requests;
- sync.keep set by SIGHUP: the Keeper pulls the new kept repository down
  from B (then B is stopped and the child still serves it);
- removing [parent] is refused with a log line naming the key and why;
- [auth] anonymous_pull, realm and enabled change what the next anonymous
  request gets (401 with the new realm, 404 once allowed or auth is off).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import unittest
import urllib.request

from faulty_upstream import FakeRegistry
from harness import (ACCEPT_ALL_MANIFESTS, DockerRegistry, Outpost, deep_merge, http, make_oci_layout, push_layout,
                     random_layer, sha256_digest, to_toml, wait_until)
from sync_helpers import manifest_digest, pull_layout, requires_sync, sync_config, sync_status
from test_ops import parse_prometheus


def write_config(op: Outpost, cfg: dict) -> None:
    with open(op.config_path, "w") as f:
        f.write(to_toml(cfg))


def reload_report(op: Outpost) -> dict:
    return http("GET", op.url + "/outpost/status").json().get("reload") or {"count": 0}


def hup(op: Outpost, expect_count: int) -> dict:
    op.send_signal(1)  # SIGHUP
    wait_until(lambda: reload_report(op)["count"] >= expect_count, 10,
               message=lambda: f"reload #{expect_count}; log:\n{op.log_tail(20)}")
    return reload_report(op)


@requires_sync
class ReloadUpstreams(unittest.TestCase):
    def test_parent_swapped_by_sighup_fill_in_flight_finishes_and_keeper_uses_the_new_list(self):
        tmp = tempfile.mkdtemp(prefix="outpost-reload-")
        # Parent A: holds one blob, and sends only half of it until released.
        a = FakeRegistry()
        a.__enter__()
        self.addCleanup(a.__exit__, None, None, None)
        slow = random_layer(512 * 1024, seed=1701)
        slow_digest = a.add_blob(slow)
        gate = threading.Event()
        a.gates[slow_digest] = gate
        self.addCleanup(gate.set)
        # Parent B: Debian's docker-registry with two images A lacks.
        b = DockerRegistry()
        b.__enter__()
        self.addCleanup(b.__exit__, None, None, None)
        only_b = make_oci_layout(os.path.join(tmp, "only-b"), tag="v1", layers=[{"b/only": b"only at B\n"}])
        kept = make_oci_layout(os.path.join(tmp, "kept"), tag="v1",
                               layers=[{"kept/app": b"kept\n"}, random_layer(64 * 1024, seed=1702)])
        push_layout(only_b, b.hostport, "only-b/app", "v1")
        push_layout(kept, b.hostport, "kept/app", "v1")

        cfg = sync_config(a.url, "ReadWrite", None, log={"level": "info"})
        cfg["parent"]["timeout"] = "60s"
        child = Outpost(config=cfg)
        child.__enter__()
        self.addCleanup(child.__exit__, None, None, None)
        full = deep_merge(child.default_config(), child.user_config)
        self.assertEqual(manifest_digest(child.url, "only-b/app", "v1")[0], 404)  # A does not have it
        asked_a = len([s for s in a.requests() if "only-b" in s.path])
        self.assertEqual(asked_a, 1)

        # 1. A blob fill from A in flight (half the bytes sent, A holding the rest).
        got: dict = {}

        def fetch_slow() -> None:
            try:
                with urllib.request.urlopen(f"{child.url}/v2/lib/slow/blobs/{slow_digest}", timeout=90) as r:
                    got["status"] = r.status
                    got["body"] = r.read()
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                got["error"] = repr(e)

        t = threading.Thread(target=fetch_slow, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        wait_until(lambda: a.count("GET", f"/v2/lib/slow/blobs/{slow_digest}") >= 1, 15,
                   message="the child's blob GET at parent A")

        # 2. SIGHUP: parent B, and a kept repository.
        full["parent"]["url"] = b.url
        full.setdefault("sync", {})["keep"] = ["kept/app:v*"]
        write_config(child, full)
        rep = hup(child, 1)
        self.assertEqual(rep["result"], "ok", rep)
        self.assertIn("parent.url", rep["applied"])
        self.assertIn("sync.keep", rep["applied"])
        self.assertEqual(rep["refused"], [])
        child.wait_log(r"upstreams reloaded")
        st = http("GET", child.url + "/outpost/status").json()
        self.assertEqual(st["upstreams"][0]["url"].rstrip("/"), b.url.rstrip("/"))

        # 3. New requests go to B: skopeo pulls what only B has, B's digest.
        top = pull_layout(f"127.0.0.1:{child.port}", "only-b/app", "v1", os.path.join(tmp, "pulled"))
        self.assertEqual(top, only_b.top_digest)
        self.assertTrue(any("/only-b/app/" in path for _, path, _ in b.requests()), b.requests())
        self.assertEqual(len([s for s in a.requests() if "only-b" in s.path]), asked_a,
                         "parent A was asked after the reload")

        # 4. The fill in flight finishes on A: every byte, the right digest.
        self.assertTrue(t.is_alive(), got)
        self.assertNotIn("upstream clients freed", child.log_text())  # the fill holds A's clients
        gate.set()
        t.join(60)
        self.assertFalse(t.is_alive(), "the blob GET started before the reload did not end")
        self.assertEqual(got.get("status"), 200, got.get("error"))
        self.assertEqual(sha256_digest(got["body"]), slow_digest)
        self.assertEqual(a.count("GET", f"/v2/lib/slow/blobs/{slow_digest}"), 1)
        # Its last holder gone, the replaced generation (A's clients) is freed.
        child.wait_log(r"upstream clients freed")
        # ... and it was kept: served again with A gone.
        a.__exit__(None, None, None)
        r = http("GET", f"{child.url}/v2/lib/slow/blobs/{slow_digest}", timeout=30)
        self.assertEqual(r.status, 200)
        self.assertEqual(sha256_digest(r.body), slow_digest)

        # 5. The Keeper took the new list: kept/app:v1 pulled down from B.
        def kept_once():
            ks = [k for k in sync_status(child).get("keep", []) if k["pattern"] == "kept/app:v*"]
            return ks[0] if ks and ks[0]["last_refresh"] and ks[0]["tags"] == 1 else None
        entry = wait_until(kept_once, 60, interval=0.2,
                           message=lambda: f"kept/app refreshed; status: {sync_status(child)}")
        self.assertIsNone(entry["last_error"])

        # 6. Real upstream requests are timed, by upstream and kind.
        fams = parse_prometheus(http("GET", child.url + "/metrics").body.decode())
        hist = fams["outpost_upstream_request_seconds"]
        self.assertEqual(hist["type"], "histogram")
        counts = {(l["upstream"], l["kind"]): v for n, l, v in hist["samples"]
                  if n == "outpost_upstream_request_seconds_count"}
        self.assertGreaterEqual(counts.get(("parent", "manifest"), 0), 2, counts)
        self.assertGreaterEqual(counts.get(("parent", "blob"), 0), 2, counts)
        self.assertGreaterEqual(counts.get(("parent", "tags"), 0), 1, counts)  # the Keeper's listing
        self.assertIn("outpost_upstream_request_failures_total", fams)
        up = http("GET", child.url + "/outpost/status").json()["upstreams"][0]
        self.assertGreaterEqual(up["requests"], 5, up)
        self.assertIsNotNone(up["request_mean_seconds"])

        # 7. B gone: what the Keeper kept is served from the child.
        b.__exit__(None, None, None)
        status, digest, _ = manifest_digest(child.url, "kept/app", "v1")
        self.assertEqual((status, digest), (200, kept.top_digest))
        for im in kept.images:
            for d in im.layer_digests:
                r = http("GET", f"{child.url}/v2/kept/app/blobs/{d}", timeout=30)
                self.assertEqual(r.status, 200, d)
                self.assertEqual(sha256_digest(r.body), d)

        # 8. Removing the parent is restart-only: refused by name and reason.
        del full["parent"]
        write_config(child, full)
        rep = hup(child, 2)
        self.assertIn("parent.url", rep["refused"])
        child.wait_log(r"reload: key needs a restart.* key=parent\.url reason=\"removing the parent needs a restart\"")
        self.assertEqual(http("GET", child.url + "/outpost/status").json()["upstreams"][0]["url"].rstrip("/"),
                         b.url.rstrip("/"))


def challenge(r) -> str:
    return r.header("WWW-Authenticate") or ""


class ReloadAuth(unittest.TestCase):
    def test_anonymous_pull_realm_and_enabled_apply_to_the_next_request(self):
        op = Outpost(config={"auth": {"enabled": True, "anonymous_pull": ["pub/**"]}, "log": {"level": "info"}})
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        full = deep_merge(op.default_config(), op.user_config)

        def anon(repo: str):
            return http("GET", f"{op.url}/v2/{repo}/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})

        self.assertEqual(anon("pub/app").status, 404)  # allowed, not held
        r = anon("priv/app")
        self.assertEqual(r.status, 401)
        self.assertIn(f'realm="http://127.0.0.1:{op.port}/token"', challenge(r))

        # anonymous_pull gains priv/**, and the realm is an explicit URL.
        full["auth"]["anonymous_pull"] = ["pub/**", "priv/**"]
        full["auth"]["realm"] = "https://auth.plant.example/token"
        full["auth"]["service"] = "plant-7"
        write_config(op, full)
        rep = hup(op, 1)
        self.assertEqual(rep["result"], "ok", rep)
        self.assertEqual(sorted(rep["applied"]), ["auth.anonymous_pull", "auth.realm", "auth.service"])
        self.assertEqual(anon("priv/app").status, 404)
        r = anon("other/app")
        self.assertEqual(r.status, 401)
        self.assertIn('realm="https://auth.plant.example/token"', challenge(r))
        self.assertIn('service="plant-7"', challenge(r))

        # pub/** dropped: refused again at once.
        full["auth"]["anonymous_pull"] = ["priv/**"]
        write_config(op, full)
        hup(op, 2)
        self.assertEqual(anon("pub/app").status, 401)
        self.assertEqual(anon("priv/app").status, 404)

        # auth.enabled off, live: anyone may pull anything.
        full["auth"]["enabled"] = False
        write_config(op, full)
        rep = hup(op, 3)
        self.assertEqual(rep["applied"], ["auth.enabled"])
        self.assertEqual(anon("other/app").status, 404)
        self.assertTrue(re.search(r"access control reloaded.* enabled=false", op.log_text()))


if __name__ == "__main__":
    unittest.main()
