"""Modes and the hierarchy rule (issue #15), with real Outpost processes,
Debian's docker-registry and curl on loopback:

- every answer carries `Outpost-Mode` (GET /v2/ as curl sees it, errors
  too); /outpost/status shows the mode;
- a ReadWrite Outpost under a ReadOnly Outpost parent exits 78 at start with
  one clear line; a ReadOnly one under it starts; a ReadWrite one starts
  when its parent is unreachable (refusing, or silent: bounded by the 3 s
  probe deadline) and later shows the parent's mode once the parent is a
  ReadOnly Outpost, in status and /metrics;
- a distribution parent is "NotOutpost";
- POST /outpost/sync (no scheduler yet: 503 UNAVAILABLE; non-loopback: 403
  DENIED) and `outpost sync now`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (DockerRegistry, Outpost, free_port, http, run_outpost, scaled, to_toml,
                     wait_until)

CONFLICT_RE = re.compile(
    r'level=error msg="cannot start" reason="parent http://127\.0\.0\.1:\d+/? is ReadOnly: '
    r'a ReadWrite outpost cannot replay pushes to it; set registry\.mode = \\"ReadOnly\\" '
    r'or point \[parent\] at a ReadWrite registry"')


def child_config(parent_url: str, mode: str = "ReadWrite") -> dict:
    return {"registry": {"mode": mode}, "parent": {"url": parent_url}}


def status(op: Outpost) -> dict:
    return http("GET", op.url + "/outpost/status").json()


def metric_lines(op: Outpost, name: str) -> list[str]:
    text = http("GET", op.url + "/metrics").body.decode()
    return [l for l in text.splitlines() if l.startswith(name)]


class ModeHeader(unittest.TestCase):
    def test_curl_sees_outpost_mode_on_every_v2_answer(self):
        for mode in ("ReadWrite", "ReadOnly"):
            with self.subTest(mode=mode), Outpost(config={"registry": {"mode": mode}}) as op:
                out = subprocess.run(["curl", "-sS", "-i", op.url + "/v2/"], capture_output=True,
                                     timeout=scaled(10), check=True).stdout.decode()
                self.assertRegex(out, r"^HTTP/1\.1 200 ")
                self.assertIn(f"\r\nOutpost-Mode: {mode}\r\n", out)
                # An error answer tells the mode too (a 401 from future auth alike).
                r = http("GET", op.url + "/v2/no/such/manifests/t")
                self.assertEqual(r.status, 404)
                self.assertEqual(r.header("Outpost-Mode"), mode)
                self.assertEqual(status(op)["mode"], mode)
                self.assertIsNone(status(op)["parent_mode"])  # no parent configured


class Hierarchy(unittest.TestCase):
    def test_readwrite_under_readonly_parent_exits_78_with_one_line(self):
        with Outpost(config={"registry": {"mode": "ReadOnly"}}) as parent:
            child = Outpost(config=child_config(parent.url), ready=False, expect_exit=78)
            try:
                child.start()
                rc = child.wait(timeout=scaled(15))
                log = child.log_text()
                self.assertEqual(rc, 78, log)
                self.assertEqual(len(CONFLICT_RE.findall(log)), 1, log)
                self.assertNotIn("outpost ready", log)  # it never served
                self.assertNotIn("listening", log)
            finally:
                child.kill()
                child._cleanup()
            # A ReadOnly child under the same parent is fine.
            with Outpost(config=child_config(parent.url, "ReadOnly")) as ro:
                wait_until(lambda: status(ro)["parent_mode"] == "ReadOnly", 10)
                self.assertIsNone(status(ro)["replay_blocked_reason"])

    def test_unreachable_parent_starts_and_learns_readonly_later(self):
        port = free_port()  # nobody listens yet
        parent_url = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        with Outpost(config=child_config(parent_url)) as child:
            self.assertLess(time.monotonic() - t0, scaled(10))
            st = status(child)
            self.assertEqual(st["parent_mode"], "Unknown")
            self.assertIsNone(st["replay_blocked_reason"])
            self.assertIn('outpost_parent_mode{mode="Unknown"} 1', metric_lines(child, "outpost_parent_mode"))

            # The parent comes up as a ReadOnly Outpost on that port: the
            # child's probe (backing off to 3 s while offline) learns it.
            parent = Outpost(raw_config=to_toml({
                "server": {"listen": [f"127.0.0.1:{port}"], "shutdown_timeout": "5s"},
                "storage": {"root": "{root}"}, "registry": {"mode": "ReadOnly"}}), ready=False)
            with parent:
                parent.port = port
                parent.wait_ready_now()
                wait_until(lambda: status(child)["parent_mode"] == "ReadOnly", 15,
                           message="child status to show the ReadOnly parent")
                st = status(child)
                self.assertRegex(st["replay_blocked_reason"], r"^parent http://127\.0\.0\.1:\d+/? is ReadOnly: "
                                 r"a ReadWrite outpost cannot replay pushes to it")
                self.assertEqual([u["mode"] for u in st["upstreams"]], ["ReadOnly"])
                m = metric_lines(child, "outpost_parent_mode")
                self.assertIn('outpost_parent_mode{mode="ReadOnly"} 1', m)
                self.assertIn('outpost_parent_mode{mode="Unknown"} 0', m)
                self.assertIn("outpost_replay_blocked 1", metric_lines(child, "outpost_replay_blocked"))
                # It keeps serving; the change was logged once.
                self.assertEqual(http("GET", child.url + "/v2/").status, 200)
                changes = [r for r in child.log_records()
                           if r.get("msg") == "parent mode changed" and r.get("mode") == "ReadOnly"]
                self.assertEqual(len(changes), 1, child.log_tail())

    def test_silent_parent_holds_the_start_at_most_one_probe_deadline(self):
        # Accepts connections (the kernel's backlog) and never answers.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
            t0 = time.monotonic()
            with Outpost(config=child_config(url)) as child:
                took = time.monotonic() - t0
                # 3 s probe deadline (first byte), plus process start.
                self.assertLess(took, scaled(8), child.log_tail())
                self.assertEqual(status(child)["parent_mode"], "Unknown")

    def test_distribution_parent_is_not_an_outpost(self):
        with DockerRegistry() as reg, Outpost(config=child_config(reg.url)) as child:
            # Probed once before serving: known as soon as it is ready.
            self.assertEqual(status(child)["parent_mode"], "NotOutpost")
            self.assertIn('outpost_parent_mode{mode="NotOutpost"} 1', metric_lines(child, "outpost_parent_mode"))
            self.assertIsNone(status(child)["replay_blocked_reason"])

    def test_readwrite_parent_is_probed_once_before_serving(self):
        with Outpost() as parent, Outpost(config=child_config(parent.url)) as child:
            self.assertEqual(status(child)["parent_mode"], "ReadWrite")
            probes = [r for r in parent.log_records() if r.get("msg") == "request" and r.get("path") == "/v2/"]
            self.assertGreaterEqual(len(probes), 1)


def non_loopback_address() -> str | None:
    """An address of this host other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


class AllAddressesOutpost(Outpost):
    """Listens on 0.0.0.0 (self.url stays the loopback address)."""

    def default_config(self) -> dict:
        c = super().default_config()
        c["server"]["listen"] = [f"0.0.0.0:{self.port}"]
        return c


class SyncEndpoint(unittest.TestCase):
    def test_post_sync_without_a_scheduler_is_503_and_sync_now_says_so(self):
        with Outpost() as op:
            r = http("POST", op.url + "/outpost/sync")
            self.assertEqual(r.status, 503)
            err = r.json()["errors"][0]
            self.assertEqual(err["code"], "UNAVAILABLE")
            self.assertIn("no sync scheduler", err["detail"])
            self.assertEqual(http("GET", op.url + "/outpost/sync").status, 503)

            res = run_outpost("sync", "now", "--wait", "--config", op.config_path)
            self.assertEqual(res.returncode, 1, res.stderr)
            self.assertIn("answered 503: UNAVAILABLE: this outpost runs no sync scheduler", res.stderr)

    def test_sync_now_arguments_and_an_outpost_that_is_not_running(self):
        for args in (["sync"], ["sync", "later"], ["sync", "now", "--timeout", "0"],
                     ["sync", "now", "--timeout", "soon"], ["serve", "--wait"]):
            with self.subTest(args=args):
                res = run_outpost(*args)
                self.assertEqual(res.returncode, 2, res.stderr)
        cfg = os.path.join(self._tmpdir(), "o.toml")
        with open(cfg, "w") as f:
            f.write(to_toml({"server": {"listen": [f"0.0.0.0:{free_port()}"]}}))
        res = run_outpost("sync", "now", "--config", cfg)
        self.assertEqual(res.returncode, 1)
        self.assertIn("cannot reach the outpost at http://127.0.0.1:", res.stderr)
        self.assertIn("sync now [--wait]", run_outpost("--help").stdout)

    def _tmpdir(self) -> str:
        d = tempfile.mkdtemp(prefix="outpost-sync-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_post_sync_from_a_non_loopback_peer_is_denied(self):
        ip = non_loopback_address()
        if ip is None:
            self.skipTest("this host has no non-loopback IPv4 address")
        op = AllAddressesOutpost()
        with op:
            r = http("POST", f"http://{ip}:{op.port}/outpost/sync")
            self.assertEqual(r.status, 403)
            self.assertEqual(r.json()["errors"][0]["code"], "DENIED")
            # The same request from loopback reaches the (missing) scheduler.
            self.assertEqual(http("POST", op.url + "/outpost/sync").status, 503)


if __name__ == "__main__":
    unittest.main()
