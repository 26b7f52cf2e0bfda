"""Load generators for bench/run: wrk (GET rates), ab -i -k (HEAD rates), curl
(downloads, time to first byte, herds) and skopeo (pushes and pulls). Each
call is bounded in time and says when it saw errors, so a rate measured on
failures is never printed as if it were good.
"""
import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from procs import spawn, stop

MANIFEST_ACCEPT = ("application/vnd.oci.image.manifest.v1+json, "
                   "application/vnd.oci.image.index.v1+json, "
                   "application/vnd.docker.distribution.manifest.v2+json")
SKOPEO = ["skopeo", "--insecure-policy"]
HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Rate:
    rps: float
    errors: str = ""     # empty when every answer was 2xx/3xx and no socket errors

    def __str__(self) -> str:
        return f"{self.rps:.0f}" + (f" ({self.errors})" if self.errors else "")


def _wrk_parse(out: str) -> Rate:
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    errs = []
    if e := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errs.append(f"{e.group(1)} non-2xx")
    if e := re.search(r"Socket errors: (.*)", out):
        errs.append("socket errors " + e.group(1))
    if not m:
        return Rate(0.0, "no wrk result: " + out.strip()[-200:])
    return Rate(float(m.group(1)), ", ".join(errs))


def _wrk_argv(url: str, conns: int, threads: int, duration: str, headers: list[str], script=None, args=()):
    argv = ["wrk", f"-t{min(threads, conns)}", f"-c{conns}", f"-d{duration}"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    return argv + [url] + (["--", *args] if args else [])


def wrk(url: str, conns: int, threads: int, duration_s: int, headers: list[str] = ()) -> Rate:
    out = subprocess.run(_wrk_argv(url, conns, threads, f"{duration_s}s", list(headers)),
                         capture_output=True, text=True, timeout=duration_s + 60).stdout
    return _wrk_parse(out)


def wrk_script(url: str, conns: int, threads: int, duration_s: int, script: str, args: list[str]) -> Rate:
    """wrk driven by a Lua script (its requests), with `args` after --."""
    out = subprocess.run(_wrk_argv(url, conns, threads, f"{duration_s}s", [], script, args),
                         capture_output=True, text=True, timeout=duration_s + 60).stdout
    return _wrk_parse(out)


class WrkBackground:
    """wrk running until finish() (SIGINT: wrk stops and reports the rate over
    the time it ran), for "GETs from other clients while X runs"."""

    def __init__(self, url: str, conns: int, threads: int, headers: list[str], cap_s: int, log: str):
        self.log = log
        self.out = open(log, "w")
        self.p = spawn(_wrk_argv(url, conns, threads, f"{cap_s}s", list(headers)), stdout=self.out)

    def finish(self) -> Rate:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
        try:
            self.p.wait(30)
        finally:
            stop(self.p)
            self.out.close()
        with open(self.log) as f:
            return _wrk_parse(f.read())


def ab_head(url: str, conns: int, duration_s: int, headers: list[str] = ()) -> Rate:
    """HEAD requests with keep-alive: ab -i -k, for duration_s seconds (-n only caps)."""
    argv = ["ab", "-q", "-i", "-k", "-c", str(conns), "-t", str(duration_s), "-n", "100000000"]
    for h in headers:
        argv += ["-H", h]
    res = subprocess.run(argv + [url], capture_output=True, text=True, timeout=duration_s + 60)
    out = res.stdout
    m = re.search(r"Requests per second:\s+([0-9.]+)", out)
    if not m:
        return Rate(0.0, "no ab result: " + (res.stderr or out).strip()[-200:])
    errs = []
    if (f := re.search(r"Failed requests:\s+(\d+)", out)) and f.group(1) != "0":
        errs.append(f"{f.group(1)} failed")
    if f := re.search(r"Non-2xx responses:\s+(\d+)", out):
        errs.append(f"{f.group(1)} non-2xx")
    return Rate(float(m.group(1)), ", ".join(errs))


def fetch_all(urls: list[str], parallel: int, expect_bytes: int, timeout_s: int = 600,
              extra: list[str] = ()) -> float:
    """Download every URL (to /dev/null) with up to `parallel` at once in one curl,
    each on its own connection; returns wall seconds. Raises unless every
    download got 200 and exactly expect_bytes."""
    argv = ["curl", "-sS", *extra, "-w", "%{http_code} %{size_download}\n"]
    if parallel > 1:
        argv += ["--parallel", "--parallel-immediate", "--parallel-max", str(parallel)]
    for u in urls:
        argv += ["-o", "/dev/null", u]
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    secs = time.monotonic() - t0
    lines = res.stdout.split()
    got = list(zip(lines[0::2], lines[1::2]))
    bad = [g for g in got if g != ("200", str(expect_bytes))]
    if len(got) != len(urls) or bad:
        raise RuntimeError(f"downloads of {urls[0]}: {len(got)}/{len(urls)} answers, bad {bad[:3]} {res.stderr[-300:]}")
    return secs


def ttfb(url: str, expect_bytes: int) -> float:
    """Seconds from the start of a GET to the first body byte (the whole body is read)."""
    res = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_starttransfer}",
                          url], capture_output=True, text=True, timeout=300)
    code, size, t = res.stdout.split()
    if code != "200" or int(size) != expect_bytes:
        raise RuntimeError(f"GET {url}: HTTP {code}, {size} bytes (want {expect_bytes}) {res.stderr}")
    return float(t)


def skopeo_copy(src: str, dst: str, timeout_s: int = 900, extra: list[str] = ()) -> float:
    """skopeo copy --all src dst over plain HTTP; returns wall seconds."""
    argv = SKOPEO + ["copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst]
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"skopeo copy {src} {dst} failed: {res.stderr[-800:]}")
    return time.monotonic() - t0


def seed_tags(registry_url: str, repo: str, manifest_file: str, media_type: str,
              count: int, tag_prefix: str, threads: int, conns: int, log: str) -> float:
    """PUT one manifest under at least `count` new tags (<tag_prefix>t<thread>-<n>)
    with wrk and bench/put_tags.lua; returns seconds. A few more tags than
    `count` may be made (see put_tags.lua): count them with count_tags()."""
    per = -(-count // threads)
    argv = _wrk_argv(registry_url, conns, threads, "900s", [],
                     os.path.join(HERE, "put_tags.lua"),
                     [f"/v2/{repo}/manifests/", str(per), tag_prefix, manifest_file, media_type])
    t0 = time.monotonic()
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, done = b"", 0
    try:
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        while done < threads and time.monotonic() - t0 < 900:
            if not sel.select(timeout=1.0):
                if p.poll() is not None:
                    break
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            done = out.count(b"thread done")
        secs = time.monotonic() - t0
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)   # every thread is done: end wrk's sleep
        rest, _ = p.communicate(timeout=30)
        out = (out + rest).decode(errors="replace")
    finally:
        stop(p)
    with open(log, "a") as f:
        f.write(out)
    m = re.search(r"seeded ok=(\d+) bad=(\d+)", out)
    if done < threads or not m or int(m.group(2)):
        raise RuntimeError(f"seeding tags into {registry_url}: {out[-500:]}")
    return secs


def count_tags(registry_url: str, repo: str) -> int:
    """Tags in repo, from GET /v2/<repo>/tags/list, following Link pages."""
    path, total = f"/v2/{repo}/tags/list?n=10000", 0
    port = int(registry_url.rsplit(":", 1)[1])
    for _ in range(10_000):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", path)
        resp = c.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
        total += len(json.loads(body).get("tags") or [])
        link = resp.getheader("Link")
        c.close()
        if not link:
            return total
        path = link.split(">", 1)[0].lstrip("<")
    raise RuntimeError(f"GET /v2/{repo}/tags/list: too many pages")
