"""Push replay under races and refusals (issue #15): what the parent ends
up holding when the edge's state changes while its replay is under way.

    edge   Outpost ReadWrite, parent = a proxy (delay_proxy.DelayProxy or
           sync_helpers.ThrottleProxy) in front of
    parent Debian docker-registry, or an Outpost where tag deletes are needed

1. A tag moved at the edge while the replay of its previous value is in
   flight (the parent is slow to answer that PUT): once the queue is empty,
   the parent's tag names the NEWER manifest.
2. The same with replay_deletes: a tag deleted at the edge while its PUT is
   in flight is gone at the parent in the end.
3. The parent refuses a repository (403, and 401 without a challenge), the
   entries fail; the cause is fixed and the same image is pushed again with
   skopeo (which skips the layers the edge holds): the parent gets the
   image, byte for byte, and the new entries do not fail.
4. replay_deletes: pushed, replayed, deleted at the edge (replayed), the
   parent garbage-collected, the same image pushed again: the parent ends
   with the image.
5. While a large layer goes up a slow link, a small image pushed after it
   reaches the parent while that layer is still on its way.

Every wait is a condition with a deadline; the proxy's delays and pacing are
the faults themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import unittest

from delay_proxy import DelayProxy
from harness import (DockerRegistry, Outpost, http, make_oci_layout, push_layout, random_layer, scaled,
                     wait_until)
from registry_helpers import Client
from sync_helpers import (CLOSED, PinnedRegistry, ThrottleProxy, assert_registry_holds, manifest_digest,
                          requires_sync, sync_config, sync_now, sync_status)

# the fault of tests 1 and 2: the parent takes this long to get the tag's PUT
# (under the edge's parent.timeout of 10 s)
SLOW_PUT_S = 6.0
# and another entry's HEAD this long (the colleague's recipe: it frees a
# replay slot while the slow PUT is still held)
SLOW_HEAD_S = 2.0


def tag_at(url: str, repo: str, tag: str) -> str | None:
    """The digest `repo:tag` names at `url`, None when it has no such tag."""
    st, d, body = manifest_digest(url, repo, tag)
    if st == 404:
        return None
    if st != 200:
        raise AssertionError(f"GET {url} {repo}:{tag}: {st} {body[:300]!r}")
    return d


def status_text(op: Outpost) -> str:
    try:
        return json.dumps(sync_status(op), indent=1)
    except (OSError, AssertionError, LookupError) as e:
        return f"(no status: {e!r})"


@requires_sync
class ReplayOrder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="sync-replay-order-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        cls.tmp = cls._tmp.name

    # -- processes, stopped in reverse order by cleanups
    def registry(self, pinned: bool = False) -> DockerRegistry:
        reg = (PinnedRegistry() if pinned else DockerRegistry()).__enter__()
        self.addCleanup(reg.__exit__, None, None, None)
        return reg

    def proxy(self, port: int) -> DelayProxy:
        px = DelayProxy(port).start()
        self.addCleanup(px.stop)
        return px

    def outpost(self, cfg: dict) -> Outpost:
        op = Outpost(config=cfg).__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        return op

    # -- conditions
    def wait_settled(self, edge: Outpost, px: DelayProxy, timeout: float = 30.0) -> dict:
        """The edge's queue is empty, nothing is in flight at the edge and no
        request is still held by the proxy: what the parent holds is final."""
        def settled():
            s = sync_status(edge)
            if s["queue"]["pending"] or s["window_progress"]["in_flight"] or px.in_flight():
                return None
            return s
        return wait_until(settled, timeout, interval=0.1,
                          message=lambda: f"the edge's replay to settle; proxy in flight:"
                                          f" {[(r.method, r.path) for r in px.in_flight()]};"
                                          f" status: {status_text(edge)}")

    def start_slow_tag_replay(self, edge: Outpost, px: DelayProxy) -> None:
        """Opens a window with the PUT of app:v1 held by the proxy and waits
        until that PUT is in flight."""
        px.set_rules([{"method": "PUT", "path": r"^/v2/app/manifests/v1$", "delay": SLOW_PUT_S, "count": 1},
                      {"method": "HEAD", "path": r"^/v2/other/blobs/", "delay": SLOW_HEAD_S, "count": 1}])
        sync_now(edge, wait=False)
        wait_until(lambda: px.in_flight("PUT", r"^/v2/app/manifests/v1$"), 20, interval=0.02,
                   message=lambda: f"the replay's PUT of app:v1 at the proxy; seen:"
                                   f" {[(r.method, r.path) for r in px.requests()]}")

    # ----------------------------------------------------------------------

    def test_1_tag_moved_during_its_replay_ends_on_the_newer_manifest(self):
        reg = self.registry()
        px = self.proxy(reg.port)
        edge = self.outpost(sync_config(px.url, "ReadWrite", CLOSED))
        c = Client(edge.url)
        d1, m1 = c.push_image("app", None, [b"manifest one\n" * 100])
        d2, m2 = c.push_image("app", None, [b"manifest two\n" * 100])
        c.push_blob("other", os.urandom(5000))   # another entry of the same window
        self.assertEqual(c.put_manifest("app", "v1", m1).status, 201)

        self.start_slow_tag_replay(edge, px)
        # the user moves the tag while "v1 -> M1" is on its way to the parent
        self.assertEqual(c.put_manifest("app", "v1", m2).status, 201)
        self.assertEqual(tag_at(edge.url, "app", "v1"), d2)

        s = self.wait_settled(edge, px)
        got = tag_at(reg.url, "app", "v1")
        names = {d1: "the OLDER manifest M1", d2: "the newer manifest M2", None: "nothing"}
        self.assertEqual(got, d2, f"parent's app:v1 names {names.get(got, got)} ({got}) once the edge's queue is"
                                  f" empty; the edge's app:v1 is M2 ({d2}), M1 is {d1}.\n"
                                  f"edge status: {json.dumps(s, indent=1)}")

    def test_2_tag_deleted_during_its_replay_is_gone_at_the_parent(self):
        site = self.outpost(sync_config(None, "ReadWrite"))   # an Outpost parent: it deletes tags
        px = self.proxy(site.port)
        edge = self.outpost(sync_config(px.url, "ReadWrite", {**CLOSED, "replay_deletes": True}))
        c = Client(edge.url)
        d1, m1 = c.push_image("app", None, [b"deleted tag\n" * 100])
        c.push_blob("other", os.urandom(5000))
        self.assertEqual(c.put_manifest("app", "v1", m1).status, 201)

        self.start_slow_tag_replay(edge, px)
        r = http("DELETE", f"{edge.url}/v2/app/manifests/v1")
        self.assertEqual(r.status, 202, r.body[:300])
        self.assertIsNone(tag_at(edge.url, "app", "v1"))

        s = self.wait_settled(edge, px)
        at_parent = tag_at(site.url, "app", "v1")
        tags = Client(site.url).tags("app")
        self.assertIsNone(at_parent, f"the parent still has app:v1 -> {at_parent} (tags {tags}) once the edge's"
                                     f" queue is empty, though the tag was deleted at the edge (replay_deletes)"
                                     f" while its PUT was in flight.\nedge status: {json.dumps(s, indent=1)}")
        self.assertNotIn("v1", tags or [])

    # ----------------------------------------------------------------------

    def refused_then_pushed_again(self, status: int, code: str, headers: dict | None = None) -> None:
        reg = self.registry()
        px = self.proxy(reg.port)
        px.set_rules([{"path": r"^/v2/team/app/", "status": status, "headers": headers or {},
                       "body": json.dumps({"errors": [{"code": code, "message": "no push to team/app"}]})}])
        edge = self.outpost(sync_config(px.url, "ReadWrite"))   # continuous sync
        lay = make_oci_layout(os.path.join(self.tmp, f"refused-{status}"), tag="v1",
                              layers=[random_layer(20000, seed=600 + status), {"app.txt": b"refused once\n"}])
        hp = f"127.0.0.1:{edge.port}"
        push_layout(lay, hp, "team/app", "v1")

        def refused():
            s = sync_status(edge)
            return s if s["queue"]["pending"] == 0 and s["queue"]["failed"] >= 1 else None
        s = wait_until(refused, 30, interval=0.1,
                       message=lambda: f"the refused entries to fail; status: {status_text(edge)}")
        failed_before = s["queue"]["failed"]
        self.assertIsNone(tag_at(reg.url, "team/app", "v1"))

        # the operator fixes the permissions at the parent and pushes the same image again
        px.set_rules([])
        push_layout(lay, hp, "team/app", "v1")

        def outcome():
            s = sync_status(edge)
            if s["queue"]["failed"] > failed_before:
                return ("failed", s)       # a new entry failed: no use waiting on
            if tag_at(reg.url, "team/app", "v1") == lay.top_digest and s["queue"]["pending"] == 0:
                return ("delivered", s)
            return None
        try:
            what, s = wait_until(outcome, 20, interval=0.2, message="team/app:v1 at the parent")
        except AssertionError as e:
            what, s = str(e), sync_status(edge)
        self.assertEqual(what, "delivered",
                         f"after the parent answered {status} and was fixed, pushing the same image again did not"
                         f" deliver it: parent team/app:v1 = {tag_at(reg.url, 'team/app', 'v1')}, want"
                         f" {lay.top_digest}; failed entries {failed_before} -> {s['queue']['failed']};"
                         f" problems: {json.dumps(s['problems'][:4], indent=1)}\nqueue: {s['queue']}")
        assert_registry_holds(self, reg.url, "team/app", "v1", lay)
        # the old refusals are answered by the delivery: no longer reported as problems
        s = sync_status(edge)
        self.assertEqual(s["queue"]["failed"], 0, f"problems still reported: {json.dumps(s['problems'][:4])}")
        self.assertEqual(s["problems"], [])

    def test_3a_refused_403_then_fixed_and_pushed_again_is_delivered(self):
        self.refused_then_pushed_again(403, "DENIED")

    def test_3b_refused_401_then_fixed_and_pushed_again_is_delivered(self):
        self.refused_then_pushed_again(401, "UNAUTHORIZED")

    # ----------------------------------------------------------------------

    def test_4_pushed_again_after_delete_and_parent_gc_is_delivered(self):
        reg = self.registry(pinned=True)
        edge = self.outpost(sync_config(reg.url, "ReadWrite", {"replay_deletes": True}))
        lay = make_oci_layout(os.path.join(self.tmp, "gc"), tag="v1",
                              layers=[random_layer(30000, seed=401), {"gc.txt": b"collected at the parent\n"}])
        im = lay.images[0]
        hp = f"127.0.0.1:{edge.port}"
        push_layout(lay, hp, "team/app", "v1")
        wait_until(lambda: tag_at(reg.url, "team/app", "v1") == lay.top_digest, 30, interval=0.1,
                   message=lambda: f"team/app:v1 at the parent; status: {status_text(edge)}")

        r = http("DELETE", f"{edge.url}/v2/team/app/manifests/{lay.top_digest}")
        self.assertEqual(r.status, 202, r.body[:300])
        wait_until(lambda: manifest_digest(reg.url, "team/app", lay.top_digest)[0] == 404
                   and sync_status(edge)["queue"]["pending"] == 0, 30, interval=0.1,
                   message=lambda: f"the delete replayed to the parent; status: {status_text(edge)}")

        # the parent's routine garbage collection, with the parent stopped
        reg.stop()
        gc = subprocess.run([reg.BIN, "garbage-collect", reg.config_path], capture_output=True, text=True,
                            timeout=scaled(60))
        self.assertEqual(gc.returncode, 0, gc.stdout + gc.stderr)
        reg.start()
        layer = im.layer_digests[0]
        self.assertEqual(http("HEAD", f"{reg.url}/v2/team/app/blobs/{layer}").status, 404,
                         "garbage-collect left the layer at the parent: the test would prove nothing")

        push_layout(lay, hp, "team/app", "v1")   # skopeo: the edge holds every layer, none is sent
        try:
            wait_until(lambda: tag_at(reg.url, "team/app", "v1") == lay.top_digest
                       and sync_status(edge)["queue"]["pending"] == 0, 20, interval=0.2,
                       message="team/app:v1 at the parent")
        except AssertionError as e:
            s = sync_status(edge)
            self.fail(f"the image pushed again after a delete and the parent's garbage-collect did not reach the"
                      f" parent: parent team/app:v1 = {tag_at(reg.url, 'team/app', 'v1')}, want {lay.top_digest}"
                      f" ({e}); queue {s['queue']}, last_error {s['window_progress']['last_error']!r},"
                      f" problems {json.dumps(s['problems'][:4])}")
        assert_registry_holds(self, reg.url, "team/app", "v1", lay)
        self.assertEqual(sync_status(edge)["queue"]["failed"], 0)

    # ----------------------------------------------------------------------

    def test_5_small_push_is_not_starved_by_a_large_layer_in_flight(self):
        big_size = 14 << 20
        rate = 1 << 20     # bytes/s on the edge -> parent link: the big layer takes ~14 s
        reg = self.registry()
        tp = ThrottleProxy(reg.port, rate=rate)
        self.addCleanup(tp.close)
        edge = self.outpost(sync_config(tp.url, "ReadWrite"))   # continuous sync
        c = Client(edge.url)
        big = c.push_blob("big", os.urandom(big_size))
        wait_until(lambda: tp.up_bytes >= (1 << 20), 20, interval=0.05,
                   message=lambda: f"the big layer's upload to start; {tp.up_bytes} bytes up;"
                                   f" status: {status_text(edge)}")

        t_push = time.monotonic()
        d, _ = c.push_image("small", "v1", [b"small image\n" * 40])

        def first():   # whichever reaches the parent first
            if tag_at(reg.url, "small", "v1") == d:
                return "small"
            if http("HEAD", f"{reg.url}/v2/big/blobs/{big}").status == 200:
                return "big"
            return None
        winner = wait_until(first, 60, interval=0.1,
                            message=lambda: f"small:v1 or the big layer at the parent; status: {status_text(edge)}")
        took = time.monotonic() - t_push
        up = tp.up_bytes
        big_there = http("HEAD", f"{reg.url}/v2/big/blobs/{big}").status == 200
        self.assertEqual(winner, "small",
                         f"small:v1 reached the parent only after the {big_size >> 20} MiB layer had gone up"
                         f" ({took:.1f}s after its push, {up} bytes sent over the link): a new push waited for"
                         f" the upload in flight.\nstatus: {status_text(edge)}")
        self.assertFalse(big_there, "the big layer was complete at the parent when small:v1 arrived")
        s = sync_status(edge)
        self.assertGreaterEqual(s["queue"]["pending"], 1, f"the big layer is no longer pending: {s}")


if __name__ == "__main__":
    unittest.main()
