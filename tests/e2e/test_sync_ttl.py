"""Replay entries that can never be delivered (issue #15, "What must be
shown", fifth point, and the retry rule for a 4xx that will never succeed).

- Message TTL: OUTPOST_TEST_MESSAGE_TTL=2s (the hidden test knob) and a
  parent that is unreachable (a port where nothing listens), continuous
  sync: the entries age past the TTL, /outpost/status shows them expired
  (queue.expired, problems with state "expired"), outpost_replay_expired
  counts them, and the image still pulls from the Outpost in full.
- Refused for good: a parent that answers every write with 403 DENIED:
  the entry is marked failed at once with the parent's error in status
  (queue.failed, problems with state "failed"), and is not retried in a
  loop: no further write reaches the parent over an observation period.
"""

from __future__ import annotations

import os
import tempfile
import time
import unittest

from harness import Outpost, free_port, make_oci_layout, push_layout, random_layer, scaled, wait_until
from sync_helpers import (RefusingParent, assert_registry_holds, metric, pull_layout, requires_sync,
                          sync_config, sync_status)

TTL_ENV = {"OUTPOST_TEST_MESSAGE_TTL": "2s"}
SETTLE_S = 0.5             # the other entries' first (refused) attempts follow the first at once
NO_RETRY_OBSERVE_S = 4.0   # > the first retry delays (1 s, 2 s) a wrong loop would show


@requires_sync
class UndeliverableEntries(unittest.TestCase):
    def setUp(self):
        t = tempfile.TemporaryDirectory(prefix="sync-ttl-e2e-")
        self.addCleanup(t.cleanup)
        self.tmp = t.name
        self.lay = make_oci_layout(os.path.join(self.tmp, "img"), tag="1",
                                   layers=[{"ttl.txt": b"never delivered\n"}, random_layer(32 * 1024, seed=181)],
                                   platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])

    def outpost(self, parent_url: str, env=None) -> Outpost:
        op = Outpost(config=sync_config(parent_url, "ReadWrite", {}), env=env)   # no schedule: continuous
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        return op

    def assert_still_pulls(self, op: Outpost, repo: str) -> None:
        top = pull_layout(f"127.0.0.1:{op.port}", repo, "1", os.path.join(self.tmp, "pulled"))
        self.assertEqual(top, self.lay.top_digest)
        assert_registry_holds(self, op.url, repo, "1", self.lay)

    def test_entries_expire_past_the_message_ttl(self):
        op = self.outpost(f"http://127.0.0.1:{free_port()}", env=TTL_ENV)   # nothing listens there
        repo = "site/expiring"
        push_layout(self.lay, f"127.0.0.1:{op.port}", repo, "1")

        def expired():
            s = sync_status(op)
            return s if s["queue"]["expired"] >= 1 and s["queue"]["pending"] == 0 else None

        s = wait_until(expired, 60, interval=0.2, message="every replay entry to expire")
        probs = [p for p in s["problems"] if p["state"] == "expired"]
        self.assertTrue(probs, s)
        self.assertTrue(all(p["repo"] == repo for p in probs), s)
        self.assertTrue(all(p.get("kind") for p in probs), s)
        self.assertGreaterEqual(metric(op, "outpost_replay_expired"), 1)
        self.assertEqual(metric(op, "outpost_replay_pending"), 0)
        self.assert_still_pulls(op, repo)

    def test_entry_refused_for_good_fails_at_once_and_is_not_retried(self):
        parent = RefusingParent()
        self.addCleanup(parent.close)
        op = self.outpost(parent.url)
        repo = "site/refused"
        push_layout(self.lay, f"127.0.0.1:{op.port}", repo, "1")

        def failed():
            s = sync_status(op)
            return s if s["queue"]["failed"] >= 1 else None

        s = wait_until(failed, 30, interval=0.1, message="a replay entry marked failed")
        probs = [p for p in s["problems"] if p["state"] == "failed"]
        self.assertTrue(probs, s)
        self.assertTrue(any("DENIED" in (p.get("error") or "") for p in probs), s)
        self.assertEqual(s["queue"]["expired"], 0, s)
        self.assertGreaterEqual(metric(op, "outpost_replay_failed"), 1)
        # Other entries may each be refused once right after the first; then
        # silence. Observation periods (nothing is awaited): SETTLE_S for the
        # rest of the first attempts, then NO_RETRY_OBSERVE_S without a write.
        time.sleep(scaled(SETTLE_S))
        writes = len(parent.writes())
        self.assertGreaterEqual(writes, 1)
        time.sleep(NO_RETRY_OBSERVE_S)
        self.assertEqual(len(parent.writes()), writes, f"failed entries retried: {parent.writes()}")
        self.assert_still_pulls(op, repo)


if __name__ == "__main__":
    unittest.main()
