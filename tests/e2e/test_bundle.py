"""Bundles (issue #19): images carried between sites on a disk.

Site A (a running Outpost, images pushed with skopeo) exports; site B (another
store, no parent, no network to A) imports; skopeo and podman pull from B
byte-identical. An incremental export against B's inventory carries only the
new blobs (listed in the tar). Parts and --resume. Each bad input (truncated
bundle, wrong bytes, missing blob, path traversal, content absent from bundle
and store) is refused naming the entry, with nothing committed. Import into a
running server is pullable at once; a docker save archive (written by skopeo)
imports; a ReadWrite site with a parent replays the imported images to it.
The 1 GiB memory check lives in test_bundle_big.py."""

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest

from harness import (ACCEPT_ALL_MANIFESTS, OCI_INDEX, OCI_MANIFEST, DockerRegistry, Outpost, http, make_oci_layout,
                     random_layer, run_outpost, scaled, sha256_digest, skopeo, skopeo_copy, wait_until)
from registry_helpers import Client

REPO = "e2e/app"


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def tar_members(path: str) -> dict[str, int]:
    """name -> size of the regular files of a (possibly compressed) tar."""
    with tarfile.open(path) as t:
        return {m.name: m.size for m in t.getmembers() if m.isfile()}


def rewrite_tar(src: str, dst: str, edit) -> None:
    """Copies the plain tar `src` to `dst`, calling edit(name, data) for every
    file: it returns new bytes, None to drop the entry, or a list of (name,
    bytes) to write instead."""
    with tarfile.open(src) as t, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as out:
        for m in t.getmembers():
            if not m.isfile():
                continue
            data = t.extractfile(m).read()
            r = edit(m.name, data)
            if r is None:
                continue
            items = r if isinstance(r, list) else [(m.name, r)]
            for name, b in items:
                ti = tarfile.TarInfo(name)
                ti.size = len(b)
                out.addfile(ti, io.BytesIO(b))


class Bundles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="bundle-")
        cls.tmp = cls._tmp.name
        base = random_layer(3 * 1024 * 1024, seed=11)  # ~3 MiB, incompressible: several 1 MiB parts
        cls.base_layer = base
        cls.v1 = make_oci_layout(os.path.join(cls.tmp, "v1"), layers=[base, {"etc/v1.txt": b"version 1\n"}],
                                 tag="v1", platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cls.v2 = make_oci_layout(os.path.join(cls.tmp, "v2"), layers=[base, {"etc/v2.txt": b"version 2\n" * 100}],
                                 tag="v2")
        cls.a = Outpost().start()
        skopeo_copy(cls.v1.ref, f"docker://{cls.a.host}:{cls.a.port}/{REPO}:v1", "--all", "--preserve-digests",
                    timeout=120)
        # A referrer (a signature-like artifact) of v1's index travels with it.
        c = Client(cls.a.url)
        sig = b'{"signature": "e2e"}'
        sig_d = c.push_blob(REPO, sig)
        empty_d = c.push_blob(REPO, b"{}")
        cls.referrer = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.e2e.sig",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_d, "size": 2},
            "layers": [{"mediaType": "application/vnd.e2e.sig", "digest": sig_d, "size": len(sig)}],
            "subject": {"mediaType": OCI_INDEX, "digest": cls.v1.top_digest, "size": len(cls.v1.top_bytes)},
        }).encode()
        cls.referrer_digest = sha256_digest(cls.referrer)
        r = c.put_manifest(REPO, cls.referrer_digest, cls.referrer)
        assert r.status == 201, r.body

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls._tmp.cleanup()

    # -- helpers
    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def site(self, **cfg) -> Outpost:
        """A stopped site B with its own store (started once to write its config)."""
        op = Outpost(config=cfg or None)
        op.start()
        op.stop()
        return op

    def outpost(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        p = run_outpost(*args, timeout=timeout)
        if ok:
            self.assertEqual(p.returncode, 0, f"outpost {' '.join(args)}:\n{p.stdout}\n{p.stderr}")
        return p

    def export_v1(self, name: str, *extra: str) -> str:
        out = self.path(name)
        self.outpost("export", "--config", self.a.config_path, "--repo", f"{REPO}:v1", *extra, "-o", out)
        return out

    def inventory(self, op: Outpost) -> dict:
        p = self.outpost("inventory", "--config", op.config_path, "-o", "-")
        return json.loads(p.stdout)

    def assert_nothing_committed(self, op: Outpost) -> None:
        self.assertEqual(self.inventory(op)["manifests"], [], "a failed import left manifests visible")

    def assert_pulls_v1_identical(self, op: Outpost) -> None:
        out = self.path(f"pulled-{op.port}")
        skopeo_copy(f"docker://{op.host}:{op.port}/{REPO}:v1", f"oci:{out}:v1", "--all", "--preserve-digests",
                    timeout=120)
        src = os.path.join(self.v1.path, "blobs", "sha256")
        got = os.path.join(out, "blobs", "sha256")
        self.assertEqual(sorted(os.listdir(got)), sorted(os.listdir(src)))
        for name in os.listdir(src):
            self.assertEqual(read(os.path.join(src, name)), read(os.path.join(got, name)), name)
        shutil.rmtree(out)

    # -- tests
    def test_export_import_pull_identical_with_skopeo_and_podman(self):
        bundle = self.export_v1("v1.tar.gz", "--compress", "gzip")  # through the running server A
        members = tar_members(bundle)
        self.assertIn("oci-layout", members)
        with tarfile.open(bundle) as t:
            index = json.load(t.extractfile("index.json"))
        roots = {(m["annotations"].get("io.outpost.repository"), m["annotations"].get(
            "org.opencontainers.image.ref.name"), m["digest"]) for m in index["manifests"]}
        self.assertEqual(roots, {(REPO, "v1", self.v1.top_digest), (REPO, None, self.referrer_digest)})
        # Any OCI tool reads it: skopeo sees the tag in the archive.
        p = skopeo("inspect", "--raw", f"oci-archive:{bundle}:v1", timeout=60)
        self.assertEqual(p.stdout.encode(), self.v1.top_bytes)
        b = self.site()
        p = self.outpost("import", "--config", b.config_path, bundle)
        self.assertIn("imported", p.stdout)
        with b:
            self.assert_pulls_v1_identical(b)
            r = http("GET", f"{b.url}/v2/{REPO}/referrers/{self.v1.top_digest}")
            self.assertEqual(r.status, 200)
            self.assertEqual([m["digest"] for m in r.json()["manifests"]], [self.referrer_digest])
            r = http("GET", f"{b.url}/v2/{REPO}/manifests/{self.referrer_digest}", headers={"Accept": OCI_MANIFEST})
            self.assertEqual((r.status, r.body), (200, self.referrer))
            root = self.path("podman-root")
            runroot = tempfile.mkdtemp(prefix="op-rr-")  # podman: runroot path under 50 characters
            pm = ["podman", "--storage-driver", "vfs", "--root", root, "--runroot", runroot,
                  "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
            ref = f"{b.host}:{b.port}/{REPO}:v1"
            try:
                p = subprocess.run([*pm, "pull", "--tls-verify=false", ref], capture_output=True, text=True,
                                   timeout=scaled(180))
                self.assertEqual(p.returncode, 0, f"podman pull failed:\n{p.stdout}\n{p.stderr}")
                p = subprocess.run([*pm, "image", "inspect", "--format", "{{.Digest}}", ref], capture_output=True,
                                   text=True, timeout=scaled(60))
                self.assertEqual((p.returncode, p.stdout.strip()), (0, self.v1.top_digest), p.stderr)
            finally:
                subprocess.run([*pm, "rmi", "-a", "-f"], capture_output=True, timeout=scaled(60))
                subprocess.run(["rm", "-rf", root, runroot], capture_output=True)

    def test_platform_filter_writes_an_index_of_the_chosen_platforms(self):
        bundle = self.export_v1("arm.tar", "--platform", "linux/arm64")
        with tarfile.open(bundle) as t:
            index = json.load(t.extractfile("index.json"))
            top = next(m for m in index["manifests"] if m["annotations"].get("org.opencontainers.image.ref.name"))
            filtered = json.load(t.extractfile("blobs/sha256/" + top["digest"].split(":")[1]))
        arm = next(i for i in self.v1.images if i.platform["architecture"] == "arm64")
        amd = next(i for i in self.v1.images if i.platform["architecture"] == "amd64")
        self.assertEqual([m["digest"] for m in filtered["manifests"]], [arm.manifest_digest])
        self.assertEqual(filtered["annotations"]["io.outpost.bundle.filtered-from"], self.v1.top_digest)
        names = tar_members(bundle)
        self.assertIn("blobs/sha256/" + arm.config_digest.split(":")[1], names)
        self.assertNotIn("blobs/sha256/" + amd.config_digest.split(":")[1], names)

    def test_incremental_export_against_inventory_carries_only_new_blobs(self):
        b = self.site()
        self.outpost("import", "--config", b.config_path, self.export_v1("base.tar"))
        inv = self.path("b-inventory.json")
        p = self.outpost("inventory", "--config", b.config_path, "-o", inv)
        self.assertIn("inventory of", p.stdout)
        skopeo_copy(self.v2.ref, f"docker://{self.a.host}:{self.a.port}/{REPO}:v2", "--preserve-digests",
                    timeout=120)
        inc = self.path("inc.tar")
        self.outpost("export", "--config", self.a.config_path, "--repo", f"{REPO}:v2", "--have", inv, "-o", inc)
        im = self.v2.images[0]
        held = json.loads(read(inv))["blobs"]
        new_blobs = {d for d in [im.config_digest, *im.layer_digests] if d not in held}
        self.assertEqual(len(new_blobs), 2)  # the config and the second layer: the 3 MiB base is held
        members = tar_members(inc)
        blob_entries = {n: s for n, s in members.items() if n.startswith("blobs/")}
        manifests = {"blobs/sha256/" + im.manifest_digest.split(":")[1]}
        carried = {n: s for n, s in blob_entries.items() if n not in manifests}
        self.assertEqual(set(carried), {"blobs/sha256/" + d.split(":")[1] for d in new_blobs})
        self.assertEqual(sum(carried.values()), sum(len(self.v2.blobs[d]) for d in new_blobs))
        self.assertLess(os.path.getsize(inc), 1024 * 1024)
        p = self.outpost("import", "--config", b.config_path, inc)
        self.assertIn("1 already held", p.stdout)
        with b:
            r = http("GET", f"{b.url}/v2/{REPO}/manifests/v2", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r.status, r.body), (200, self.v2.top_bytes))
            for d in im.layer_digests:
                r = http("GET", f"{b.url}/v2/{REPO}/blobs/{d}")
                self.assertEqual((r.status, sha256_digest(r.body)), (200, d))

    def test_parts_resume_and_import_of_parts(self):
        whole = self.export_v1("whole.tar.gz", "--compress", "gzip", "--max-part", "1MiB")
        parts = sorted(f for f in os.listdir(self.tmp) if f.startswith("whole.tar.gz."))
        self.assertGreaterEqual(len(parts), 3, parts)
        for f in parts[:-1]:
            self.assertEqual(os.path.getsize(self.path(f)), 1024 * 1024)
        want = {f: read(self.path(f)) for f in parts}
        # An interrupted export: the last part gone, the one before cut short.
        os.remove(self.path(parts[-1]))
        with open(self.path(parts[-2]), "r+b") as f:
            f.truncate(1000)
        p = self.outpost("export", "--config", self.a.config_path, "--repo", f"{REPO}:v1", "--compress", "gzip",
                         "--max-part", "1MiB", "--resume", "-o", whole)
        self.assertIn("resumed", p.stdout)
        for f in parts:
            self.assertEqual(read(self.path(f)), want[f], f"{f} differs after --resume")
        # A part that does not belong: resume refuses instead of appending.
        with open(self.path(parts[0]), "r+b") as f:
            f.seek(5000)
            f.write(b"X")
        p = self.outpost("export", "--config", self.a.config_path, "--repo", f"{REPO}:v1", "--compress", "gzip",
                         "--max-part", "1MiB", "--resume", "-o", whole, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("differs from this export", p.stderr)
        with open(self.path(parts[0]), "wb") as f:
            f.write(want[parts[0]])
        b = self.site()
        self.outpost("import", "--config", b.config_path, *[self.path(f) for f in parts])
        with b:
            self.assert_pulls_v1_identical(b)

    def test_import_into_running_server_is_pullable_at_once(self):
        bundle = self.export_v1("live.tar.zst", "--compress", "zstd")
        with Outpost() as b:
            p = self.outpost("import", "--config", b.config_path, bundle)
            self.assertIn("through the running server", p.stdout + p.stderr)
            r = http("GET", f"{b.url}/v2/{REPO}/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual((r.status, r.body), (200, self.v1.top_bytes))
            inv = json.loads(self.outpost("inventory", "--config", b.config_path, "-o", "-").stdout)
            self.assertIn(self.v1.top_digest, inv["manifests"])

    def test_layout_with_index_last_and_no_repository_needs_repo_and_passes(self):
        """A foreign layout tar: blobs first, index.json last, ref.name only
        (as other tools write): --repo names the repository; read in passes."""
        src = self.plain_v1()
        with tarfile.open(src) as t:
            files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
        idx = json.loads(files.pop("index.json"))
        for m in idx["manifests"]:
            m["annotations"].pop("io.outpost.repository")
        foreign = self.path("foreign.tar")
        with tarfile.open(foreign, "w") as out:
            for name, data in sorted(files.items(), reverse=True) + [("index.json", json.dumps(idx).encode())]:
                ti = tarfile.TarInfo("./" + name)
                ti.size = len(data)
                out.addfile(ti, io.BytesIO(data))
        b = self.site()
        p = self.outpost("import", "--config", b.config_path, foreign, ok=False)
        self.assertIn("give --repo", p.stderr)
        self.outpost("import", "--config", b.config_path, "--repo", "other/name", foreign)
        inv = self.inventory(b)
        self.assertIn(self.v1.top_digest, inv["manifests"])
        self.assertIn(sha256_digest(self.base_layer), inv["blobs"])

    def test_running_server_refuses_to_export_into_its_storage_root(self):
        target = os.path.join(self.a.root, "blobs", "evil.tar")
        p = self.outpost("export", "--config", self.a.config_path, "--repo", f"{REPO}:v1", "-o", target, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("inside the storage root", p.stderr)
        self.assertFalse(os.path.exists(target))

    def test_docker_save_archive_imports(self):
        arch = self.path("docker.tar")
        skopeo_copy(f"docker://{self.a.host}:{self.a.port}/{REPO}:v1", f"docker-archive:{arch}:e2e/dock:saved",
                    "--override-arch", "arm64", timeout=120)
        names = tar_members(arch)
        self.assertIn("manifest.json", names)
        with tarfile.open(arch) as t:
            saved = json.load(t.extractfile("manifest.json"))[0]
            config = t.extractfile(saved["Config"]).read()
            layers = [t.extractfile(l).read() for l in saved["Layers"]]
        b = self.site()
        p = self.outpost("import", "--config", b.config_path, arch)
        self.assertIn("docker-save", p.stdout)
        with b:
            r = http("GET", f"{b.url}/v2/e2e/dock/manifests/saved", headers={"Accept": ACCEPT_ALL_MANIFESTS})
            self.assertEqual(r.status, 200, r.body[:300])
            m = r.json()
            self.assertEqual(m["config"]["digest"], sha256_digest(config))
            self.assertEqual([l["digest"] for l in m["layers"]], [sha256_digest(l) for l in layers])
            self.assertEqual([l["digest"] for l in m["layers"]], json.loads(config)["rootfs"]["diff_ids"])
            out = self.path("dock-out")
            skopeo_copy(f"docker://{b.host}:{b.port}/e2e/dock:saved", f"dir:{out}", timeout=120)

    def test_readwrite_site_with_parent_replays_imported_images(self):
        bundle = self.export_v1("replay.tar")
        with DockerRegistry() as reg:
            b = self.site(parent={"url": reg.url, "connect_timeout": "2s", "timeout": "10s"})
            self.outpost("import", "--config", b.config_path, bundle)
            with b:
                def parent_has() -> bool:
                    r = http("GET", f"{reg.url}/v2/{REPO}/manifests/v1", headers={"Accept": ACCEPT_ALL_MANIFESTS})
                    return r.status == 200 and r.body == self.v1.top_bytes
                wait_until(parent_has, timeout=60)

    # -- bad input: each refused naming the entry, nothing committed
    def bad(self, bundle: str, *expect: str) -> None:
        b = self.site()
        p = self.outpost("import", "--config", b.config_path, bundle, ok=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        for e in expect:
            self.assertIn(e, p.stderr)
        self.assert_nothing_committed(b)

    def plain_v1(self) -> str:
        if not os.path.exists(self.path("plain.tar")):
            self.export_v1("plain.tar")
        return self.path("plain.tar")

    def layer_entry(self) -> str:
        return "blobs/sha256/" + sha256_digest(self.base_layer).split(":")[1]

    def test_bad_truncated_bundle(self):
        src = self.plain_v1()
        data = read(src)
        cut = self.path("cut.tar")
        # Cut inside the 3 MiB layer: the entry being read is named.
        with tarfile.open(src) as t:
            m = t.getmember(self.layer_entry())
        with open(cut, "wb") as f:
            f.write(data[: m.offset_data + 100000])
        self.bad(cut, self.layer_entry(), "truncated")

    def test_bad_blob_bytes(self):
        bad = self.path("badbytes.tar")
        rewrite_tar(self.plain_v1(), bad, lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == self.layer_entry() else d)
        self.bad(bad, self.layer_entry(), "do not hash")

    def test_bad_missing_blob(self):
        bad = self.path("missing.tar")
        rewrite_tar(self.plain_v1(), bad, lambda n, d: None if n == self.layer_entry() else d)
        self.bad(bad, sha256_digest(self.base_layer), "neither in the bundle nor in this store")

    def test_bad_path_traversal(self):
        for name in ("../evil", "/etc/evil", "blobs/../../evil"):
            bad = self.path("traversal.tar")
            rewrite_tar(self.plain_v1(), bad, lambda n, d: [(n, d), (name, b"x")] if n == "index.json" else d)
            self.bad(bad, f'entry "{name}"')

    def test_bad_index_fields_of_the_wrong_type(self):
        """A number or a list where index.json has strings ended the process
        (nlohmann type_error: the server died with an import through it)."""
        for field, value, expect in (("digest", 12345, "index.json entry 0"),
                                     ("mediaType", ["x"], None),
                                     ("annotations", {"io.outpost.repository": 5,
                                                      "org.opencontainers.image.ref.name": ["v1"]}, None)):
            def edit(n, d, field=field, value=value):
                if n != "index.json":
                    return d
                idx = json.loads(d)
                idx["manifests"][0][field] = value
                return json.dumps(idx).encode()
            bad = self.path("types.tar")
            rewrite_tar(self.plain_v1(), bad, edit)
            b = self.site()
            p = self.outpost("import", "--config", b.config_path, bad, ok=False)
            with self.subTest(field=field):
                self.assertLess(p.returncode, 128, p.stderr)  # an error, not a signal
                self.assertGreaterEqual(p.returncode, 0, p.stderr)
                if expect:
                    self.assertEqual(p.returncode, 1, p.stderr)
                    self.assertIn(expect, p.stderr)

    def add_root(self, name: str, blobs: list[bytes], top: bytes, media_type: str, tag: str) -> str:
        """plain_v1 plus `blobs` and one more index.json root (`top`, tagged
        `tag`), written to `name`."""
        def edit(n, d):
            if n != "index.json":
                return d
            idx = json.loads(d)
            idx["manifests"].append({"mediaType": media_type, "digest": sha256_digest(top), "size": len(top),
                                     "annotations": {"io.outpost.repository": REPO,
                                                     "org.opencontainers.image.ref.name": tag}})
            # index.json first, then the manifests from the top down: one pass
            extra = [("blobs/sha256/" + sha256_digest(b).split(":")[1], b) for b in [top] + blobs[::-1]]
            return [(n, json.dumps(idx).encode())] + extra
        out = self.path(name)
        rewrite_tar(self.plain_v1(), out, edit)
        return out

    def test_bad_deep_second_root_commits_nothing(self):
        """The nesting limit refused the bundle only while committing, after
        the first root's tag was in."""
        top = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
        chain = []
        for _ in range(18):
            chain.append(top)
            top = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_INDEX, "digest": sha256_digest(top), "size": len(top)}]}).encode()
        self.bad(self.add_root("deep.tar", chain, top, OCI_INDEX, "deep"), "nesting deeper than 16")

    def test_bad_manifest_over_max_manifest_bytes(self):
        """Imported, it could never be served (413) nor exported again."""
        with tarfile.open(self.plain_v1()) as t:
            idx = json.load(t.extractfile("index.json"))
            first = t.extractfile("blobs/sha256/" + idx["manifests"][0]["digest"].split(":")[1]).read()
        man = json.loads(first)
        if man.get("mediaType") == OCI_INDEX:
            with tarfile.open(self.plain_v1()) as t:
                first = t.extractfile("blobs/sha256/" + man["manifests"][0]["digest"].split(":")[1]).read()
            man = json.loads(first)
        man["annotations"] = {"padding": "x" * (5 * 1024 * 1024)}
        big = json.dumps(man).encode()
        self.bad(self.add_root("big.tar", [], big, OCI_MANIFEST, "big"), "max_manifest_bytes")

    def test_bad_docker_save_layer_not_its_diff_id(self):
        """docker load checks each layer against the config's rootfs.diff_ids;
        a flipped bit in layer.tar was imported and served."""
        arch = self.path("docker-flip-src.tar")
        skopeo_copy(f"docker://{self.a.host}:{self.a.port}/{REPO}:v1", f"docker-archive:{arch}:e2e/dock:saved",
                    "--override-arch", "arm64", timeout=120)
        with tarfile.open(arch) as t:
            layer = json.load(t.extractfile("manifest.json"))[0]["Layers"][0]
        bad = self.path("docker-flip.tar")
        rewrite_tar(arch, bad, lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == layer else d)
        self.bad(bad, layer, "rootfs.diff_ids")

    def test_bad_reference_absent_from_bundle_and_store(self):
        ghost = sha256_digest(b"not anywhere")

        def edit(n, d):
            if n != "index.json":
                return d
            idx = json.loads(d)
            idx["manifests"].append({"mediaType": OCI_MANIFEST, "digest": ghost, "size": 12,
                                     "annotations": {"io.outpost.repository": REPO,
                                                     "org.opencontainers.image.ref.name": "ghost"}})
            return json.dumps(idx).encode()
        bad = self.path("ghost.tar")
        rewrite_tar(self.plain_v1(), bad, edit)
        self.bad(bad, ghost, "neither in the bundle nor in this store")


if __name__ == "__main__":
    unittest.main()
