"""Pull-through from a real parent (Debian's docker-registry, CNCF
distribution 2.8):

- a multi-arch image pulled by skopeo through a cold Outpost arrives with
  identical digests and bytes; every blob is fetched from the parent once;
  a second pull asks the parent only to revalidate the tag (HEAD, when
  cache.tag_ttl has passed) or nothing at all (within tag_ttl);
- podman pulls through a cold Outpost;
- Outpost under Outpost under docker-registry: one pull from the bottom
  fills both Outposts (proved with the registry stopped);
- a named [[upstream]] is reachable by containerd's ?ns= and by a path
  prefix, and both share one cache.
"""

import filecmp
import json
import os
import subprocess
import tempfile
import time
import unittest

from harness import (ACCEPT_ALL_MANIFESTS, OCI_INDEX, DockerRegistry, Outpost, http,
                     make_oci_layout, push_layout, registry_mark, registry_requests_between,
                     scaled, sha256_digest, skopeo_copy)

REPO = "e2e/multi"
TAG = "v1"


def layout_blobs(path: str) -> set[str]:
    return set(os.listdir(os.path.join(path, "blobs", "sha256")))


def index_entries(path: str) -> list[tuple]:
    with open(os.path.join(path, "index.json")) as f:
        idx = json.load(f)
    return sorted((m["mediaType"], m["digest"], m["size"]) for m in idx["manifests"])


def parent_cfg(url: str, tag_ttl: str = "1h", **extra) -> dict:
    return {"parent": {"url": url, "connect_timeout": "2s", "timeout": "10s", **extra},
            "cache": {"tag_ttl": tag_ttl}}


class PullThroughRegistry(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="pull-registry-")
        cls.addClassCleanup(cls._tmp.cleanup)
        cls.tmp = cls._tmp.name
        # Real tar.gz layers (podman unpacks them): a shared base layer with a
        # few files, a bigger one, plus a per-platform layer from make_oci_layout.
        files = {"etc/outpost-e2e.txt": b"pulled through outpost\n",
                 "usr/share/e2e/data.bin": os.urandom(300 * 1024)}
        cls.lay = make_oci_layout(os.path.join(cls.tmp, "src"), layers=[files], tag=TAG,
                                  platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cls.reg = DockerRegistry().__enter__()
        cls.addClassCleanup(cls.reg.__exit__, None, None, None)
        push_layout(cls.lay, cls.reg.hostport, REPO)
        # the digests the parent serves as blobs (configs and layers)
        cls.blob_digests = sorted({d for im in cls.lay.images for d in [im.config_digest, *im.layer_digests]})
        cls.manifest_digests = [im.manifest_digest for im in cls.lay.images]

    def out_dir(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=name + "-", dir=self.tmp)

    def assert_same_layout(self, out: str):
        src = self.lay.path
        self.assertEqual(index_entries(out), index_entries(src))
        want, got = layout_blobs(src), layout_blobs(out)
        self.assertEqual(got, want, "blob sets differ")
        _match, mismatch, errors = filecmp.cmpfiles(os.path.join(src, "blobs", "sha256"),
                                                    os.path.join(out, "blobs", "sha256"),
                                                    sorted(want), shallow=False)
        self.assertEqual((mismatch, errors), ([], []))

    def pull(self, op: Outpost, name: str, repo: str = REPO) -> str:
        out = self.out_dir(name)
        skopeo_copy(f"docker://{op.host}:{op.port}/{repo}:{TAG}", f"oci:{out}:{TAG}",
                    "--all", "--preserve-digests", timeout=180)
        return out

    def blob_gets(self, reqs, digest: str) -> int:
        return sum(1 for m, p, s in reqs if m == "GET" and p == f"/v2/{REPO}/blobs/{digest}")

    # ------------------------------------------------------------------
    def test_cold_pull_then_revalidation_only(self):
        """tag_ttl = 0s: every tag read is revalidated. The second pull sends
        the parent HEAD manifest requests for the tag and nothing else."""
        with Outpost(config=parent_cfg(self.reg.url, tag_ttl="0s")) as op:
            m0 = registry_mark(self.reg)
            out1 = self.pull(op, "cold")
            self.assert_same_layout(out1)
            m1 = registry_mark(self.reg)
            first = registry_requests_between(self.reg, m0, m1)
            for d in self.blob_digests:
                self.assertEqual(self.blob_gets(first, d), 1, f"GETs of {d} on the first pull: {first}")
            self.assertTrue(all(s in (200, 307) for _m, _p, s in first), first)

            out2 = self.pull(op, "warm")
            self.assert_same_layout(out2)
            m2 = registry_mark(self.reg)
            second = registry_requests_between(self.reg, m1, m2)
            self.assertTrue(second, "tag_ttl=0s: the second pull must revalidate the tag")
            self.assertEqual([(m, p) for m, p, _s in second if (m, p) != ("HEAD", f"/v2/{REPO}/manifests/{TAG}")],
                             [], f"the second pull touched the parent for more than tag HEADs: {second}")

    def test_within_tag_ttl_second_pull_touches_nothing(self):
        with Outpost(config=parent_cfg(self.reg.url, tag_ttl="1h")) as op:
            out1 = self.pull(op, "cold")
            self.assert_same_layout(out1)
            m1 = registry_mark(self.reg)
            out2 = self.pull(op, "warm")
            self.assert_same_layout(out2)
            m2 = registry_mark(self.reg)
            self.assertEqual(registry_requests_between(self.reg, m1, m2), [])
            # and the cached tag answers plain clients the same way
            r = http("GET", f"{op.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r.status, r.header("Content-Type"), r.header("Docker-Content-Digest")),
                             (200, OCI_INDEX, self.lay.top_digest))
            self.assertEqual(r.body, self.lay.top_bytes)
            m3 = registry_mark(self.reg)
            self.assertEqual(registry_requests_between(self.reg, m2, m3), [])

    def test_cached_content_served_with_parent_gone(self):
        """What a cold pull stored answers with the parent unreachable."""
        with DockerRegistry() as reg:
            push_layout(self.lay, reg.hostport, REPO)
            with Outpost(config=parent_cfg(reg.url, tag_ttl="0s")) as op:
                self.assert_same_layout(self.pull(op, "cold"))
                reg.stop()
                # tag_ttl=0s: the tag is revalidated, the parent is gone, the cached tag answers
                self.assert_same_layout(self.pull(op, "offline"))
                r = http("GET", f"{op.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": ACCEPT_ALL_MANIFESTS},
                         timeout=30)
                self.assertEqual((r.status, r.body), (200, self.lay.top_bytes))

    def test_podman_pull_through_cold_outpost(self):
        with Outpost(config=parent_cfg(self.reg.url)) as op:
            root = self.out_dir("podman-root")
            runroot = tempfile.mkdtemp(prefix="op-rr-")  # podman: runroot path under 50 characters
            base = ["podman", "--storage-driver", "vfs", "--root", root, "--runroot", runroot,
                    "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
            ref = f"{op.host}:{op.port}/{REPO}:{TAG}"
            try:
                m0 = registry_mark(self.reg)
                p = subprocess.run([*base, "pull", "--tls-verify=false", ref], capture_output=True, text=True,
                                   timeout=scaled(180))
                self.assertEqual(p.returncode, 0, f"podman pull failed:\n{p.stdout}\n{p.stderr}")
                p = subprocess.run([*base, "image", "inspect", "--format", "{{.Digest}} {{.Architecture}}", ref],
                                   capture_output=True, text=True, timeout=scaled(60))
                self.assertEqual(p.returncode, 0, p.stderr)
                digest, arch = p.stdout.split()
                self.assertEqual(digest, self.lay.top_digest)
                # podman verified and unpacked the layers of its platform; the parent served them once
                reqs = registry_requests_between(self.reg, m0, registry_mark(self.reg))
                im = next(i for i in self.lay.images if i.platform["architecture"] == arch)
                for d in [im.config_digest, *im.layer_digests]:
                    self.assertEqual(self.blob_gets(reqs, d), 1, f"parent GETs of {d}: {reqs}")
            finally:
                subprocess.run([*base, "rmi", "-a", "-f"], capture_output=True, timeout=scaled(60))
                subprocess.run(["rm", "-rf", root, runroot], capture_output=True)

    def test_outpost_chained_under_outpost(self):
        """bottom -> middle -> docker-registry: a pull from the bottom fills
        both Outposts; with the registry stopped both still hold it all."""
        with DockerRegistry() as reg:
            push_layout(self.lay, reg.hostport, REPO)
            with Outpost(config=parent_cfg(reg.url)) as mid, \
                    Outpost(config=parent_cfg(mid.url)) as bottom:
                self.assert_same_layout(self.pull(bottom, "chain"))
                m = registry_mark(reg)
                reqs = reg.requests()[:m]
                for d in self.blob_digests:
                    self.assertEqual(self.blob_gets(reqs, d), 1, f"registry GETs of {d}: {reqs}")
                reg.stop()
                for name, op in (("middle", mid), ("bottom", bottom)):
                    for d in self.blob_digests:
                        r = http("HEAD", f"{op.url}/v2/{REPO}/blobs/{d}", timeout=30)
                        self.assertEqual(r.status, 200, f"{name} does not hold {d}")
                        r = http("GET", f"{op.url}/v2/{REPO}/blobs/{d}", timeout=30)
                        self.assertEqual((r.status, sha256_digest(r.body)), (200, d), name)
                    for d in [self.lay.top_digest, *self.manifest_digests]:
                        r = http("GET", f"{op.url}/v2/{REPO}/manifests/{d}",
                                 headers={"Accept": ACCEPT_ALL_MANIFESTS}, timeout=30)
                        self.assertEqual((r.status, sha256_digest(r.body)), (200, d), f"{name}: manifest {d}")
                    r = http("GET", f"{op.url}/v2/{REPO}/manifests/{TAG}",
                             headers={"Accept": ACCEPT_ALL_MANIFESTS}, timeout=30)
                    self.assertEqual((r.status, r.header("Docker-Content-Digest")), (200, self.lay.top_digest), name)
                # and each Outpost's blobs directory holds the bytes (<root>/blobs/sha256/<ab>/<hex>)
                for name, op in (("middle", mid), ("bottom", bottom)):
                    for d in self.blob_digests:
                        hexd = d.split(":", 1)[1]
                        with open(os.path.join(op.root, "blobs", "sha256", hexd[:2], hexd), "rb") as f:
                            self.assertEqual(sha256_digest(f.read()), d, name)

    def test_named_upstream_by_ns_and_by_path_prefix_share_the_cache(self):
        cfg = {"upstream": [{"name": "mirror.test", "url": self.reg.url, "timeout": "10s"}],
               "cache": {"tag_ttl": "1h"}}
        with Outpost(config=cfg) as op:
            acc = {"Accept": ACCEPT_ALL_MANIFESTS}
            m0 = registry_mark(self.reg)
            r1 = http("GET", f"{op.url}/v2/{REPO}/manifests/{TAG}?ns=mirror.test", headers=acc)
            self.assertEqual((r1.status, r1.header("Docker-Content-Digest")), (200, self.lay.top_digest), r1.body[:300])
            self.assertEqual(r1.body, self.lay.top_bytes)
            r2 = http("GET", f"{op.url}/v2/mirror.test/{REPO}/manifests/{TAG}", headers=acc)
            self.assertEqual((r2.status, r2.body), (200, self.lay.top_bytes))
            r3 = http("HEAD", f"{op.url}/v2/mirror.test/{REPO}/manifests/{TAG}", headers=acc)
            self.assertEqual((r3.status, r3.header("Docker-Content-Digest")), (200, self.lay.top_digest))

            layer = self.lay.images[0].layer_digests[0]
            b1 = http("GET", f"{op.url}/v2/{REPO}/blobs/{layer}?ns=mirror.test")
            self.assertEqual((b1.status, sha256_digest(b1.body)), (200, layer))
            b2 = http("GET", f"{op.url}/v2/mirror.test/{REPO}/blobs/{layer}")
            self.assertEqual((b2.status, sha256_digest(b2.body)), (200, layer))
            m1 = registry_mark(self.reg)
            seen = registry_requests_between(self.reg, m0, m1)
            self.assertEqual([(m, p) for m, p, _s in seen],
                             [("GET", f"/v2/{REPO}/manifests/{TAG}"), ("GET", f"/v2/{REPO}/blobs/{layer}")],
                             "the two addressing styles must share one cache")

            # a whole image through the path-prefix name works for skopeo too
            out = self.pull(op, "prefix", repo=f"mirror.test/{REPO}")
            self.assert_same_layout(out)

            # not a named upstream and no [parent]: nothing is fetched
            m2 = registry_mark(self.reg)
            for url in (f"{op.url}/v2/{REPO}/manifests/{TAG}",
                        f"{op.url}/v2/{REPO}/manifests/{TAG}?ns=other.test"):
                r = http("GET", url, headers=acc)
                self.assertEqual(r.status, 404, url)
            m3 = registry_mark(self.reg)
            self.assertEqual(registry_requests_between(self.reg, m2, m3), [])

    def test_tag_moved_upstream_is_followed(self):
        """tag_ttl=0s: a tag re-pushed upstream is served with its new
        digest on the next read; the old image stays reachable by digest."""
        with DockerRegistry() as reg:
            push_layout(self.lay, reg.hostport, "e2e/moving")
            acc = {"Accept": ACCEPT_ALL_MANIFESTS}
            with Outpost(config=parent_cfg(reg.url, tag_ttl="0s")) as op:
                r = http("GET", f"{op.url}/v2/e2e/moving/manifests/{TAG}", headers=acc)
                self.assertEqual((r.status, r.header("Docker-Content-Digest")), (200, self.lay.top_digest))
                lay2 = make_oci_layout(self.out_dir("v2src"), layers=[{"new.txt": b"second version\n"}], tag=TAG)
                push_layout(lay2, reg.hostport, "e2e/moving")
                r = http("GET", f"{op.url}/v2/e2e/moving/manifests/{TAG}", headers=acc)
                self.assertEqual((r.status, r.header("Docker-Content-Digest"), r.body),
                                 (200, lay2.top_digest, lay2.top_bytes))
                r = http("HEAD", f"{op.url}/v2/e2e/moving/manifests/{TAG}", headers=acc)
                self.assertEqual(r.header("Docker-Content-Digest"), lay2.top_digest)
                r = http("GET", f"{op.url}/v2/e2e/moving/manifests/{self.lay.top_digest}", headers=acc)
                self.assertEqual((r.status, r.body), (200, self.lay.top_bytes))
                out = self.out_dir("moved")
                skopeo_copy(f"docker://{op.host}:{op.port}/e2e/moving:{TAG}", f"oci:{out}:{TAG}",
                            "--preserve-digests", timeout=120)
                self.assertEqual(index_entries(out), index_entries(lay2.path))

    def test_head_of_uncached_blob_does_not_download_it(self):
        d = self.lay.images[0].layer_digests[0]
        # ReadWrite: a HEAD is a pushing client's "do you have it?", answered
        # from the store alone; the parent is asked nothing (issue #13).
        with Outpost(config=parent_cfg(self.reg.url)) as op:
            m0 = registry_mark(self.reg)
            self.assertEqual(http("HEAD", f"{op.url}/v2/{REPO}/blobs/{d}").status, 404)
            asked = [r for r in registry_requests_between(self.reg, m0, registry_mark(self.reg)) if r[1] != "/v2/"]
            self.assertEqual(asked, [])
        # ReadOnly: nobody pushes; the parent tells the size.
        with Outpost(config={**parent_cfg(self.reg.url), "registry": {"name": "e2e", "mode": "ReadOnly"}}) as op:
            size = len(self.lay.blobs[d])
            m0 = registry_mark(self.reg)
            r = http("HEAD", f"{op.url}/v2/{REPO}/blobs/{d}")
            self.assertEqual((r.status, r.header("Content-Length"), r.header("Docker-Content-Digest")),
                             (200, str(size), d))
            m1 = registry_mark(self.reg)
            self.assertEqual([(m, p) for m, p, _s in registry_requests_between(self.reg, m0, m1)],
                             [("HEAD", f"/v2/{REPO}/blobs/{d}")])
            r = http("GET", f"{op.url}/v2/{REPO}/blobs/{d}")
            self.assertEqual((r.status, sha256_digest(r.body)), (200, d))
            # a digest the parent does not have: 404 for HEAD and GET, and Outpost lives on
            unknown = "sha256:" + "0" * 64
            for method in ("HEAD", "GET", "HEAD", "GET"):
                self.assertEqual(http(method, f"{op.url}/v2/{REPO}/blobs/{unknown}").status, 404, method)

    def test_library_prefix_upstream(self):
        """[[upstream]] library_prefix = true (Docker Hub naming): a
        one-component name is asked for as library/<name>."""
        with DockerRegistry() as reg:
            push_layout(self.lay, reg.hostport, "library/alpine")
            cfg = {"upstream": [{"name": "hub.test", "url": reg.url, "library_prefix": True}]}
            with Outpost(config=cfg) as op:
                acc = {"Accept": ACCEPT_ALL_MANIFESTS}
                r = http("GET", f"{op.url}/v2/alpine/manifests/{TAG}?ns=hub.test", headers=acc)
                self.assertEqual((r.status, r.body), (200, self.lay.top_bytes))
                r = http("GET", f"{op.url}/v2/hub.test/alpine/manifests/{TAG}", headers=acc)
                self.assertEqual((r.status, r.body), (200, self.lay.top_bytes))
                out = self.out_dir("hub")
                skopeo_copy(f"docker://{op.host}:{op.port}/hub.test/alpine:{TAG}", f"oci:{out}:{TAG}",
                            "--all", "--preserve-digests", timeout=120)
                self.assert_same_layout(out)
            self.assertIn(("GET", f"/v2/library/alpine/manifests/{TAG}"), [(m, p) for m, p, _s in reg.requests()])

    def test_parent_unreachable_cold_miss_fails_fast(self):
        with DockerRegistry() as reg:
            url = reg.url
        # nobody listens there now
        with Outpost(config=parent_cfg(url, tag_ttl="0s")) as op:
            t0 = time.monotonic()
            r = http("GET", f"{op.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": ACCEPT_ALL_MANIFESTS},
                     timeout=30)
            self.assertGreaterEqual(r.status, 500)
            self.assertIn("errors", r.json())
            r = http("GET", f"{op.url}/v2/{REPO}/blobs/{self.blob_digests[0]}", timeout=30)
            self.assertGreaterEqual(r.status, 500)
            self.assertLess(time.monotonic() - t0, scaled(10))


if __name__ == "__main__":
    unittest.main()
