"""containerd 1.6 (`ctr images pull --hosts-dir`) pulling docker.io images
through Outpost as a mirror (issue #17), as root in a network namespace with
only loopback, with the hosts.toml recipes shipped in conf/clients/:

- containerd-hosts.toml: containerd asks /v2/library/e2e-app/...?ns=docker.io,
  so Outpost's [[upstream]] named docker.io answers (from the local parent);
- containerd-hosts-override-path.toml (override_path = true): containerd asks
  /v2/docker.io/library/e2e-app/...?ns=docker.io; the same upstream answers,
  from the same cache (the parent is not asked again);
- the content containerd holds is the parent's, byte for byte; the parent
  sent each blob once; `ctr images push` of it to Outpost named directly
  works, with containerd-hosts-outpost.toml;
- with the parent stopped, fresh containerds pull both ways from the cache;
- what ctr prints for a tag not cached while the parent is down, and while
  Outpost is down (quoted in docs/operations.md);
- containerd accepts conf/clients/containerd-config.toml (config_path, for
  Kubernetes nodes) as shipped.
"""

import os
import subprocess

from client_helpers import CONF_CLIENTS, HOST_PLATFORM, ClientCase, blob_gets, containerd_in_netns, recipe
from harness import ACCEPT_ALL_MANIFESTS, Outpost, http


class ContainerdClient(ClientCase):
    REF = f"docker.io/library/{ClientCase.HUB_NAME}:{ClientCase.TAG}"

    def hosts_dir(self, recipe_name: str, registry: str = "docker.io") -> str:
        """A --hosts-dir with the recipe as <registry>/hosts.toml."""
        d = os.path.join(self.tmp, "hosts-" + recipe_name)
        os.makedirs(os.path.join(d, registry), exist_ok=True)
        with open(os.path.join(d, registry, "hosts.toml"), "w") as f:
            f.write(recipe(recipe_name, f"127.0.0.1:{self.op.port}"))
        return d

    def outpost_hosts_dir(self) -> str:
        """containerd-hosts-outpost.toml: Outpost as a registry of its own."""
        return self.hosts_dir("containerd-hosts-outpost.toml", f"127.0.0.1:{self.op.port}")

    def pull(self, name: str, recipe_name: str, ref: str = REF, check: bool = True, push: str | None = None):
        """A fresh containerd pulls ref with the given hosts.toml recipe;
        returns the CompletedProcess (content checked when check). With
        push, the image is then tagged and pushed there (plain HTTP)."""
        with containerd_in_netns(os.path.join(self.tmp, name)) as cd:
            p = cd.ctr("images", "pull", "--snapshotter", "native", "--hosts-dir",
                       self.hosts_dir(recipe_name), ref, check=check)
            if check:
                self.assert_content(cd)
            if push:
                cd.ctr("images", "tag", ref, push)
                cd.ctr("images", "push", "--hosts-dir", self.outpost_hosts_dir(), "--platform", HOST_PLATFORM, push)
            return p

    def assert_content(self, cd) -> None:
        images = cd.ctr("images", "ls").stdout.splitlines()
        self.assertTrue(any(l.split()[0] == self.REF and self.lay.top_digest in l for l in images[1:]), images)
        have = set(cd.ctr("content", "ls", "-q").stdout.split())
        for d in [self.lay.top_digest, self.native.manifest_digest, *self.native_blobs()]:
            self.assertIn(d, have)
        for d in self.native_blobs():
            self.assertEqual(cd.content(d), self.lay.blobs[d], d)

    def test_pull_ns_and_override_path_then_parent_down(self):
        # 1. ?ns=docker.io, online
        before = len(self.op_requests())
        pushed = f"127.0.0.1:{self.op.port}/e2e/ctr-pushed:{self.TAG}"
        self.pull("ns-online", "containerd-hosts.toml", push=pushed)
        reqs = self.op_requests(before)
        paths = [r["path"] for r in reqs]
        # no /v2/ ping; HEAD by tag, then GETs by digest
        self.assertEqual((reqs[0]["method"], paths[0]), ("HEAD", f"/v2/library/{self.HUB_NAME}/manifests/{self.TAG}"))
        self.assertNotIn("/v2/", paths)
        # ctr push --platform (this machine's) to Outpost named directly: the
        # tag is that image's manifest (ctr pulled no other platform)
        r = http("GET", f"{self.op.url}/v2/e2e/ctr-pushed/manifests/{self.TAG}",
                 headers={"Accept": ACCEPT_ALL_MANIFESTS})
        self.assertEqual((r.status, r.header("Docker-Content-Digest"), r.body),
                         (200, self.native.manifest_digest, self.native.manifest))
        # ?ns=docker.io chose the [[upstream]] named docker.io (the request
        # log shows the path only; the fills name the upstream and local repo)
        fills = [r for r in self.op.log_records() if r.get("msg") == "fill started"]
        self.assertTrue(fills)
        self.assertEqual({(r["upstream"], r["repo"]) for r in fills}, {("docker.io", f"docker.io/library/{self.HUB_NAME}")})
        for d in self.native_blobs():
            self.assertTrue(self.served_by_outpost(reqs, d), f"{d} not served by Outpost: {paths}")
        self.assert_parent_sent_each_blob_once()
        self.assertGreaterEqual(self.metrics().get("outpost_cache_fills_committed_total", 0), len(self.native_blobs()))
        parent_gets = blob_gets(self.parent.requests())

        # 2. override_path: /v2/docker.io/library/..., same cache
        before = len(self.op_requests())
        self.pull("override-online", "containerd-hosts-override-path.toml")
        paths = [r["path"] for r in self.op_requests(before)]
        self.assertIn(f"/v2/docker.io/library/{self.HUB_NAME}/manifests/{self.TAG}", paths)
        self.assertEqual(blob_gets(self.parent.requests()), parent_gets, "the parent was asked again")

        # 3. the parent goes away: both recipes pull from the cache
        self.parent.stop()
        # (and ctr push works while the parent is offline: its HEAD of the new tag gets a 404)
        self.pull("ns-offline", "containerd-hosts.toml", push=f"127.0.0.1:{self.op.port}/e2e/ctr-offline:{self.TAG}")
        r = http("HEAD", f"{self.op.url}/v2/e2e/ctr-offline/manifests/{self.TAG}", headers={"Accept": ACCEPT_ALL_MANIFESTS})
        self.assertEqual((r.status, r.header("Docker-Content-Digest")), (200, self.native.manifest_digest))
        self.pull("override-offline", "containerd-hosts-override-path.toml")
        self.assertGreater(self.metrics().get("outpost_cache_served_offline_total", 0), 0)

        # 4. what ctr shows for a tag not cached while the parent is down ...
        missing = f"docker.io/library/{self.HUB_NAME}:missing"
        p = self.pull("ns-missing", "containerd-hosts.toml", missing, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("registry-1.docker.io", p.stderr)  # HEAD 404: containerd tried `server`
        self.say("ctr pull via hosts.toml, parent down, not cached", p.stderr)
        with containerd_in_netns(os.path.join(self.tmp, "direct-missing")) as cd:
            ref = f"127.0.0.1:{self.op.port}/{self.DIRECT_REPO}:missing"
            p = cd.ctr("images", "pull", "--hosts-dir", self.outpost_hosts_dir(), ref, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"{ref}: not found", p.stderr)  # the HEAD's 404 (ReadWrite mode)
        self.say("ctr pull direct, parent down, not cached", p.stderr)
        # ... and while Outpost itself is down
        self.op.stop()
        p = self.pull("ns-outpost-down", "containerd-hosts.toml", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("connection refused", p.stderr)
        self.say("ctr pull via hosts.toml, Outpost down", p.stderr)

    def test_kubernetes_config_path_recipe(self):
        # Kubernetes nodes: the kubelet asks containerd's CRI plugin, which
        # reads the same hosts.toml files once config_path names their
        # directory. containerd must accept the shipped fragment as it is.
        p = subprocess.run(["containerd", "--config", os.path.join(CONF_CLIENTS, "containerd-config.toml"),
                            "config", "dump"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        dump = p.stdout.split('[plugins."io.containerd.grpc.v1.cri".registry]', 1)
        self.assertEqual(len(dump), 2, p.stdout)
        self.assertEqual(dump[1].split("[", 1)[0].split(), ["config_path", "=", '"/etc/containerd/certs.d"'])

    def test_readonly_outpost_offline_miss(self):
        # A ReadOnly Outpost answers a HEAD miss while the parent is offline
        # with 503 (a ReadWrite one says 404, for pushing clients): what
        # containerd shows then.
        cfg = {"registry": {"mode": "ReadOnly"},
               "parent": {"url": "http://127.0.0.1:9", "offline": True}}
        with Outpost(cfg) as ro:
            hosts = os.path.join(self.tmp, "hosts-readonly")
            os.makedirs(os.path.join(hosts, f"127.0.0.1:{ro.port}"))
            with open(os.path.join(hosts, f"127.0.0.1:{ro.port}", "hosts.toml"), "w") as f:
                f.write(recipe("containerd-hosts-outpost.toml", f"127.0.0.1:{ro.port}"))
            with containerd_in_netns(os.path.join(self.tmp, "readonly")) as cd:
                p = cd.ctr("images", "pull", "--hosts-dir", hosts, f"127.0.0.1:{ro.port}/factory/app:1.4", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("503 Parent Offline And Not Cached", p.stderr)
        self.say("ctr pull from a ReadOnly Outpost, parent offline, not cached", p.stderr)
