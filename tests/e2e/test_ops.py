"""Operations (issue #17): what a site operator sees and uses.

- `outpost status [--json]` against a running outpost, and with none running;
- the status page GET /outpost/ rendered by headless Chromium, its facts
  checked against GET /outpost/status, a screenshot kept as an artifact;
- SIGHUP: live keys applied (log level, sync schedule), restart-only keys
  refused with a log line naming them, a bad file changing nothing, and a
  keep-alive connection served across every reload;
- /metrics read by a strict Prometheus text parser; /healthz and /readyz;
- systemd: READY=1 then periodic WATCHDOG=1 on a NOTIFY_SOCKET the test binds;
- the listener under EMFILE: low CPU during a connection storm, serving after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (DockerRegistry, Outpost, RawConn, free_port, http, make_oci_layout, outpost_bin, push_layout,
                     run_outpost, scaled, to_toml, deep_merge, wait_until)
from sync_helpers import CLOSED, sync_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def artifact_dir() -> str:
    """Under the meson build dir when run by meson (kept with the test logs),
    else a temp dir; printed in the TAP output either way."""
    build = os.environ.get("MESON_BUILD_ROOT") or os.environ.get("OUTPOST_BUILD_ROOT")
    if build:
        d = os.path.join(build, "meson-logs", "e2e-artifacts")
    else:
        d = os.path.join(tempfile.gettempdir(), "outpost-e2e-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


# --------------------------------------------------------------------------
# a strict Prometheus text-format (0.0.4) parser

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+|Inf|NaN)")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class PromError(AssertionError):
    pass


def parse_labels(s: str, line: str) -> tuple[dict[str, str], str]:
    """s starts after '{'; returns the labels and the rest after '}'."""
    labels: dict[str, str] = {}
    i = 0
    while True:
        if i < len(s) and s[i] == "}":
            return labels, s[i + 1:]
        m = LABEL_NAME.match(s, i)
        if not m:
            raise PromError(f"bad label name in {line!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise PromError(f"expected =\" after label {name} in {line!r}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise PromError(f"unterminated label value in {line!r}")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise PromError(f"bad escape \\{nxt} in {line!r}")
                val.append("\n" if nxt == "n" else nxt)
                i += 2
                continue
            if c == '"':
                i += 1
                break
            val.append(c)
            i += 1
        if name in labels:
            raise PromError(f"label {name} twice in {line!r}")
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            continue
        else:
            raise PromError(f"expected , or }} in {line!r}")


def parse_prometheus(text: str) -> dict[str, dict]:
    """{family: {"type", "help", "samples": [(name, labels, value)]}}; raises
    PromError on anything the format does not allow, including a sample
    before its family's TYPE, a family's TYPE twice, a family split in two,
    a duplicate series, and an inconsistent histogram."""
    if not text.endswith("\n"):
        raise PromError("exposition does not end with a newline")
    fams: dict[str, dict] = {}
    order: list[str] = []
    series: set = set()

    def family_of(name: str) -> str:
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)] if name.endswith(suffix) else None
            if base and base in fams and fams[base]["type"] in ("histogram", "summary"):
                return base
        return name

    for line in text.split("\n")[:-1]:
        if not line:
            raise PromError("empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.fullmatch(name):
                    raise PromError(f"bad metric name in {line!r}")
                f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                if name not in order:
                    order.append(name)
                elif order[-1] != name:
                    raise PromError(f"family {name} split: {line!r}")
                key = parts[1].lower()
                if f[key] is not None:
                    raise PromError(f"second {parts[1]} for {name}")
                if f["samples"]:
                    raise PromError(f"{parts[1]} after samples of {name}")
                val = parts[3] if len(parts) > 3 else ""
                if key == "type" and val not in TYPES:
                    raise PromError(f"unknown type {val!r} for {name}")
                f[key] = val
            continue
        m = METRIC_NAME.match(line)
        if not m:
            raise PromError(f"bad sample line {line!r}")
        name = m.group(0)
        rest = line[m.end():]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, rest = parse_labels(rest[1:], line)
        if not rest.startswith(" "):
            raise PromError(f"no space before value in {line!r}")
        fields = rest[1:].split(" ")
        if not fields or not VALUE.fullmatch(fields[0]) or len(fields) > 2:
            raise PromError(f"bad value in {line!r}")
        value = float(fields[0].replace("Inf", "inf"))
        fam = family_of(name)
        if fam not in fams or fams[fam]["type"] is None:
            raise PromError(f"sample {name} before its # TYPE line")
        if order[-1] != fam:
            raise PromError(f"family {fam} split by {line!r}")
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise PromError(f"duplicate series {line!r}")
        series.add(key)
        fams[fam]["samples"].append((name, labels, value))

    for fam, f in fams.items():
        if f["type"] is None:
            raise PromError(f"family {fam} has no TYPE")
        if f["type"] == "counter":
            for name, labels, v in f["samples"]:
                if v < 0:
                    raise PromError(f"negative counter {name}{labels}")
        if f["type"] == "histogram":
            check_histogram(fam, f["samples"])
    return fams


def check_histogram(fam: str, samples: list) -> None:
    groups: dict[tuple, dict] = {}
    for name, labels, v in samples:
        base = {k: x for k, x in labels.items() if k != "le"}
        g = groups.setdefault(tuple(sorted(base.items())), {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            if "le" not in labels:
                raise PromError(f"{name} without le")
            g["buckets"].append((float(labels["le"].replace("Inf", "inf")), v))
        elif name == fam + "_sum":
            g["sum"] = v
        elif name == fam + "_count":
            g["count"] = v
        else:
            raise PromError(f"{name} in histogram {fam}")
    for key, g in groups.items():
        if g["sum"] is None or g["count"] is None:
            raise PromError(f"histogram {fam}{dict(key)} lacks _sum or _count")
        b = g["buckets"]
        if not b or b[-1][0] != float("inf"):
            raise PromError(f"histogram {fam}{dict(key)} lacks le=\"+Inf\" (last)")
        les = [x[0] for x in b]
        if les != sorted(les) or len(set(les)) != len(les):
            raise PromError(f"histogram {fam}{dict(key)} buckets not increasing")
        counts = [x[1] for x in b]
        if counts != sorted(counts):
            raise PromError(f"histogram {fam}{dict(key)} buckets not cumulative: {counts}")
        if b[-1][1] != g["count"]:
            raise PromError(f"histogram {fam}{dict(key)}: +Inf bucket {b[-1][1]} != _count {g['count']}")
        if g["sum"] < 0:
            raise PromError(f"histogram {fam}{dict(key)}: negative _sum")


def sample(fams: dict, name: str, **labels: str) -> float | None:
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in fams:
            fam = name[: -len(suffix)]
    for n, ls, v in fams.get(fam, {}).get("samples", []):
        if n == name and all(ls.get(k) == x for k, x in labels.items()):
            return v
    return None


# --------------------------------------------------------------------------

class PromParser(unittest.TestCase):
    """The parser refuses what it must (so a pass below means something)."""

    def test_parser_rejects_broken_expositions(self):
        ok = ("# HELP a_total x\n# TYPE a_total counter\na_total{r=\"x\\\"y\"} 3\n"
              "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n")
        parse_prometheus(ok)
        bad = [
            "a 1\n",                                                     # no TYPE
            "# TYPE a counter\na 1\na 2\n",                              # duplicate series
            "# TYPE a counter\na{b=\"1\" 1\n",                           # unterminated labels
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            "# TYPE a counter\na 1",                                     # no final newline
            "# TYPE a counter\n# TYPE b gauge\nb 1\na 1\n",              # family split
        ]
        for text in bad:
            with self.assertRaises(PromError, msg=text):
                parse_prometheus(text)


class StatusAndPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="ops-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        tmp = cls._tmp.name
        cls.layout = make_oci_layout(os.path.join(tmp, "img"), tag="1", layers=[{"hello.txt": b"ops page\n"}])
        cls.parent = DockerRegistry().__enter__()
        cls.addClassCleanup(cls.parent.__exit__, None, None, None)
        push_layout(cls.layout, cls.parent.hostport, "lib/hello", "1")
        # A name with markup in it: the page must show it as text.
        cfg = sync_config(cls.parent.url, "ReadWrite", CLOSED,
                          registry={"name": "dock <b>7</b> & \"co\""})
        cls.op = Outpost(config=cfg).__enter__()
        cls.addClassCleanup(cls.op.__exit__, None, None, None)
        # One pull through (GET by tag: a miss), the same again (a hit), one push.
        accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
        for _ in range(2):
            r = http("GET", cls.op.url + "/v2/lib/hello/manifests/1", headers=accept)
            assert r.status == 200, (r.status, r.body[:300])
        push_layout(cls.layout, f"127.0.0.1:{cls.op.port}", "site/own", "v1")

    def status(self) -> dict:
        r = http("GET", self.op.url + "/outpost/status")
        self.assertEqual(r.status, 200)
        return r.json()

    def test_status_json_has_the_operator_facts(self):
        st = self.status()
        for key in ("name", "version", "mode", "uptime_seconds", "started", "upstreams", "sync", "cache",
                    "storage", "sync_schedule"):
            self.assertIn(key, st)
        self.assertEqual(st["sync_schedule"], CLOSED["schedule"])
        parent = st["upstreams"][0]
        for key in ("state", "last_success", "last_error", "last_error_at"):
            self.assertIn(key, parent)
        self.assertEqual(parent["state"], "online")
        self.assertIsNotNone(parent["last_success"])
        self.assertGreaterEqual(st["cache"]["misses"], 1)
        self.assertGreaterEqual(st["cache"]["hits"], 1)
        self.assertTrue(0 < st["cache"]["hit_ratio"] < 1)
        self.assertGreater(st["storage"]["fs_size_bytes"], 0)
        for key in ("pending", "bytes_pending", "oldest_age_s", "failed", "expired"):
            self.assertIn(key, st["sync"]["queue"])
        self.assertGreaterEqual(st["sync"]["queue"]["pending"], 1)  # the push waits for a window

    def test_status_cli_json_and_table(self):
        r = run_outpost("status", "--json", "--config", self.op.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        self.assertEqual(st["name"], "dock <b>7</b> & \"co\"")
        self.assertEqual(st["mode"], "ReadWrite")
        r = run_outpost("status", "--config", self.op.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        print("# outpost status:\n" + "\n".join("#   " + l for l in out.splitlines()))
        self.assertIn(f"outpost at http://127.0.0.1:{self.op.port}", out)
        self.assertRegex(out, r"mode\s+ReadWrite")
        self.assertRegex(out, r"state\s+online")
        self.assertRegex(out, r"schedule\s+0 0 1 1 \*")
        self.assertRegex(out, r"window\s+closed")
        self.assertRegex(out, r"next window\s+20\d\d-")
        self.assertRegex(out, r"depth\s+[1-9]")
        self.assertRegex(out, r"hit ratio\s+\d+\.\d%")
        # No storage.max_size: no quota; nothing evicted yet.
        self.assertRegex(out, r"quota\s+n/a")
        self.assertRegex(out, r"evictions\s+0\b")
        self.assertRegex(out, r"uptime\s+\d+")

    def test_page_in_headless_chromium_shows_the_status_facts(self):
        if not CHROMIUM:
            self.skipTest("chromium is not installed")
        url = self.op.url + "/outpost/"
        r = http("GET", url)
        self.assertEqual(r.status, 200)
        self.assertIn("text/html", r.header("Content-Type"))
        html = r.body.decode()
        self.assertIn('<meta http-equiv="refresh" content="10">', html)
        self.assertNotIn("<script", html.lower())
        self.assertNotRegex(html, r"(src|href)=\"https?://")  # no external asset
        self.assertIn("dock &lt;b&gt;7&lt;/b&gt; &amp; &quot;co&quot;", html)
        self.assertNotIn("<b>7</b>", html)

        prof = tempfile.mkdtemp(prefix="ops-chromium-")
        self.addCleanup(shutil.rmtree, prof, True)
        # (--dump-dom itself needs JavaScript; the page has none, checked above.)
        base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--user-data-dir={prof}"]
        dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=scaled(90))
        self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
        page = dom.stdout
        st = self.status()

        def shown(id_: str) -> str:
            m = re.search(r'id="' + re.escape(id_) + r'"[^>]*>([^<]*)<', page)
            self.assertIsNotNone(m, f"id {id_} not on the page")
            return (m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                    .replace("&#39;", "'").replace("&amp;", "&"))

        self.assertEqual(shown("mode"), st["mode"])
        self.assertEqual(shown("version"), st["version"])
        self.assertEqual(shown("link-state"), st["upstreams"][0]["state"])
        self.assertEqual(shown("link-last-success")[:13], st["upstreams"][0]["last_success"][:13])
        self.assertEqual(shown("sync-schedule"), st["sync_schedule"])
        self.assertEqual(shown("next-window"), st["sync"]["window"]["next"])
        self.assertEqual(shown("queue-pending"), str(st["sync"]["queue"]["pending"]))
        self.assertEqual(shown("queue-failed"), str(st["sync"]["queue"]["failed"]))
        self.assertEqual(shown("queue-expired"), str(st["sync"]["queue"]["expired"]))
        self.assertEqual(shown("storage-root"), st["storage"]["root"])
        self.assertEqual(shown("cache-quota"), "n/a")
        self.assertEqual(shown("cache-evictions"), str(st["storage"]["evicted"]["blobs"]))
        # The recent transfers: the pulls of lib/hello and the push of site/own.
        recent = page[page.index('id="recent"'):]
        self.assertIn("lib/hello", recent)
        self.assertIn("site/own", recent)
        self.assertRegex(recent, r"pull \(GET\)")
        self.assertRegex(recent, r"push \(PUT\)")
        self.assertIn("sha256:", recent)

        shot = os.path.join(artifact_dir(), "status-page.png")
        s = subprocess.run(base + ["--window-size=1280,1400", f"--screenshot={shot}", url],
                           capture_output=True, text=True, timeout=scaled(90))
        self.assertEqual(s.returncode, 0, s.stderr[-2000:])
        self.assertTrue(os.path.getsize(shot) > 1000)
        print(f"# screenshot of the status page: {shot}")

    def test_metrics_parse_strictly_and_cover_routes_cache_upstream_queue(self):
        r = http("GET", self.op.url + "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/plain; version=0.0.4"))
        fams = parse_prometheus(r.body.decode())
        route = "/v2/{name}/manifests/{reference}"
        self.assertGreaterEqual(sample(fams, "outpost_http_route_requests_total", route=route, method="GET",
                                       status="200"), 2)
        self.assertGreater(sample(fams, "outpost_http_route_sent_bytes_total", route=route), 0)
        self.assertGreaterEqual(sample(fams, "outpost_http_request_duration_seconds_count", route=route), 2)
        self.assertEqual(fams["outpost_http_request_duration_seconds"]["type"], "histogram")
        self.assertGreaterEqual(sample(fams, "outpost_cache_hits_total"), 1)
        self.assertGreaterEqual(sample(fams, "outpost_cache_misses_total"), 1)
        self.assertIsNotNone(sample(fams, "outpost_cache_fills_started_total"))
        self.assertEqual(sample(fams, "outpost_upstream_state", upstream="parent"), 0)
        self.assertIsNotNone(sample(fams, "outpost_upstream_probe_duration_seconds", upstream="parent"))
        self.assertGreaterEqual(sample(fams, "outpost_replay_pending") or 0, 1)
        self.assertGreater(sample(fams, "outpost_storage_fs_size_bytes"), 0)
        self.assertEqual(sample(fams, "outpost_ready"), 1)
        for f in fams.values():
            self.assertTrue(f["help"], "every family has a HELP line")

    def test_healthz_and_readyz(self):
        self.assertEqual(http("GET", self.op.url + "/healthz").status, 200)
        r = http("GET", self.op.url + "/readyz")
        self.assertEqual(r.status, 200, r.body)


class SyncNowOnATerminal(unittest.TestCase):
    def test_progress_is_one_rewritten_line_on_a_tty_and_plain_lines_otherwise(self):
        import pty
        parent = DockerRegistry().__enter__()
        self.addCleanup(parent.__exit__, None, None, None)
        op = Outpost(config=sync_config(parent.url, "ReadWrite", CLOSED))
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        tmp = tempfile.mkdtemp(prefix="ops-tty-")
        self.addCleanup(shutil.rmtree, tmp, True)
        layout = make_oci_layout(os.path.join(tmp, "img"), tag="1", layers=[{"t.txt": b"tty\n"}])
        push_layout(layout, f"127.0.0.1:{op.port}", "site/tty", "1")
        # On a pseudo-terminal: progress lines end with \r-rewrites, not newlines.
        binary = outpost_bin()
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(binary, ["outpost", "sync", "now", "--wait", "--config", op.config_path])
        out = b""
        deadline = time.monotonic() + scaled(120)
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        text = out.decode(errors="replace")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
        self.assertIn("\r", text)
        self.assertIn("\x1b[K", text)
        progress = [l for l in text.replace("\r\n", "\n").split("\n") if "pending" in l]
        self.assertEqual(len(progress), 1, f"one progress line, rewritten in place: {text!r}")
        self.assertIn("done: the queue is empty", text)
        # Into a pipe: plain lines, no control characters.
        push_layout(layout, f"127.0.0.1:{op.port}", "site/tty2", "1")
        r = run_outpost("sync", "now", "--wait", "--config", op.config_path, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\r", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("done: the queue is empty", r.stdout)


class StatusNoServer(unittest.TestCase):
    def test_status_says_none_is_running(self):
        tmp = tempfile.mkdtemp(prefix="ops-none-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port = free_port()
        path = os.path.join(tmp, "outpost.toml")
        with open(path, "w") as f:
            f.write(to_toml({"server": {"listen": [f"127.0.0.1:{port}"]}, "storage": {"root": tmp + "/s"}}))
        r = run_outpost("status", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"no outpost running at http://127.0.0.1:{port}", r.stderr)
        self.assertEqual(r.stdout, "")


class Reload(unittest.TestCase):
    def write(self, op: Outpost, cfg: dict) -> None:
        with open(op.config_path, "w") as f:
            f.write(to_toml(cfg))

    def reloads(self, op: Outpost) -> dict:
        return http("GET", op.url + "/outpost/status").json().get("reload") or {"count": 0}

    def hup(self, op: Outpost, expect_count: int) -> dict:
        op.send_signal(1)  # SIGHUP
        wait_until(lambda: self.reloads(op)["count"] >= expect_count, 10,
                   message=lambda: f"reload #{expect_count}; log:\n{op.log_tail(20)}")
        return self.reloads(op)

    def test_sighup_applies_live_keys_refuses_restart_keys_and_keeps_connections(self):
        parent = DockerRegistry().__enter__()
        self.addCleanup(parent.__exit__, None, None, None)
        op = Outpost(config=sync_config(parent.url, "ReadWrite", CLOSED, log={"level": "info"}))
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        cfg = deep_merge(op.default_config(), op.user_config)
        self.assertEqual(http("GET", op.url + "/outpost/status").json()["sync_schedule"], CLOSED["schedule"])
        with RawConn(op.port) as conn:
            def still_served() -> None:
                conn.send(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(conn.read_response().status, 200)

            still_served()
            # 1. log level info -> warn: the reload's own "configuration
            # reloaded" (info) line is no longer written.
            cfg["log"]["level"] = "warn"
            cfg["sync"]["schedule"] = "30 4 * * *"
            self.write(op, cfg)
            rep = self.hup(op, 1)
            self.assertEqual(rep["result"], "ok")
            self.assertEqual(sorted(rep["applied"]), ["log.level", "sync.schedule"])
            self.assertEqual(rep["refused"], [])
            st = http("GET", op.url + "/outpost/status").json()
            self.assertEqual(st["sync_schedule"], "30 4 * * *")
            self.assertRegex(st["sync"]["window"]["next"], r"T04:30:00Z$")
            self.assertNotIn("configuration reloaded", op.log_text())
            still_served()
            # 2. back to debug, and storage.root changed: refused by name.
            cfg["log"]["level"] = "debug"
            old_root = cfg["storage"]["root"]
            cfg["storage"]["root"] = old_root + "-elsewhere"
            cfg["server"]["listen"] = [f"127.0.0.1:{free_port()}"]
            self.write(op, cfg)
            rep = self.hup(op, 2)
            self.assertEqual(sorted(rep["refused"]), ["server.listen", "storage.root"])
            op.wait_log(r"reload: key needs a restart.* key=storage\.root")
            op.wait_log(r"reload: key needs a restart.* key=server\.listen")
            op.wait_log(r"configuration reloaded")  # info again
            st = http("GET", op.url + "/outpost/status").json()
            self.assertEqual(st["storage"]["root"], old_root)
            self.assertEqual(st["log_level"], "debug")
            still_served()
            # 3. a file that does not parse: logged, nothing changes.
            with open(op.config_path, "w") as f:
                f.write("[log]\nlevel = \"loud\"\n")
            rep = self.hup(op, 3)
            self.assertNotEqual(rep["result"], "ok")
            op.wait_log(r"reload failed: configuration kept as it was")
            st = http("GET", op.url + "/outpost/status").json()
            self.assertEqual(st["log_level"], "debug")
            self.assertEqual(st["sync_schedule"], "30 4 * * *")
            still_served()


class Watchdog(unittest.TestCase):
    def test_ready_then_periodic_watchdog_pings(self):
        tmp = tempfile.mkdtemp(prefix="ops-notify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(0.2)
        op = Outpost(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        got: list[tuple[float, str]] = []
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline and sum(1 for _, m in got if m == "WATCHDOG=1") < 6:
            try:
                data = sock.recv(4096).decode()
            except socket.timeout:
                continue
            for m in data.split("\n"):
                if m:
                    got.append((time.monotonic(), m))
        msgs = [m for _, m in got]
        self.assertIn("READY=1", msgs)
        pings = [t for t, m in got if m == "WATCHDOG=1"]
        self.assertGreaterEqual(len(pings), 6, msgs)
        self.assertLess(msgs.index("READY=1"), msgs.index("WATCHDOG=1"))
        # Every 200 ms (half of 400 ms): six pings take about a second.
        self.assertLess(pings[-1] - pings[0], scaled(4.0))
        self.assertTrue(any(m.startswith("STATUS=serving") for m in msgs), msgs)


class Emfile(unittest.TestCase):
    def test_listener_backs_off_on_emfile_and_serves_after(self):
        if not shutil.which("prlimit"):
            self.skipTest("prlimit (util-linux) is not installed")
        op = Outpost()
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        # A low open-file limit, soft and hard, so outpost cannot raise it.
        subprocess.run(["prlimit", f"--pid={op.pid}", "--nofile=48:48"], check=True)
        conns = []
        try:
            t0 = cpu_seconds(op.pid)
            w0 = time.monotonic()
            for _ in range(120):
                try:
                    s = socket.create_connection(("127.0.0.1", op.port), timeout=2)
                    conns.append(s)
                except OSError:
                    break
            op.wait_log(r"out of file descriptors")
            # Hold the storm for two seconds: a spinning accept loop burns a core.
            time.sleep(2.0)  # the measured interval itself, not a synchronisation
            used = cpu_seconds(op.pid) - t0
            wall = time.monotonic() - w0
            print(f"# outpost CPU during the EMFILE storm: {used:.2f} s over {wall:.1f} s")
            self.assertLess(used, 0.5 * wall)
            lines = [l for l in op.log_text().splitlines() if "out of file descriptors" in l]
            self.assertLessEqual(len(lines), int(wall) + 2, lines)
        finally:
            for s in conns:
                s.close()
        wait_until(lambda: http("GET", op.url + "/v2/", timeout=2).status == 200, 15,
                   message="served again after the storm")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    unittest.main()
