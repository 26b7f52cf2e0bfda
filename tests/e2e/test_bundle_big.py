"""Bundles of 1 GiB (issue #19): an export and an import of a four-layer
1 GiB image each run in under 32 MiB of peak RSS (memory flat in the bundle
size: blobs are copied through fixed buffers, never held whole). The image
is written as an OCI layout directory by a fast generator, imported into
site A from the directory (the layout-directory path), exported to a tar,
and imported into site B. Separate from test_bundle.py: it moves 4 GiB of
disk traffic."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, SANITIZED, Outpost, outpost_bin, scaled

LAYER = 256 * 1024 * 1024
LAYERS = 4
CHUNK = 4 * 1024 * 1024
MAX_RSS_KB = 32 * 1024


def write_blob(blobs: str, data_iter) -> tuple[str, int]:
    h = hashlib.sha256()
    tmp = os.path.join(blobs, "tmp")
    n = 0
    with open(tmp, "wb") as f:
        for chunk in data_iter:
            h.update(chunk)
            f.write(chunk)
            n += len(chunk)
    os.rename(tmp, os.path.join(blobs, h.hexdigest()))
    return "sha256:" + h.hexdigest(), n


def random_chunks(size: int, seed: int):
    # Incompressible and cheap: a SHAKE stream seeded per layer would be
    # slow in Python; urandom is fast and the digests are computed anyway.
    del seed
    left = size
    while left:
        n = min(CHUNK, left)
        yield os.urandom(n)
        left -= n


def make_big_layout(path: str) -> list[str]:
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)
    layers = [write_blob(blobs, random_chunks(LAYER, i)) for i in range(LAYERS)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}}).encode()
    cfg_d, cfg_n = write_blob(blobs, [config])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": cfg_n},
                           "layers": [{"mediaType": OCI_LAYER_TAR, "digest": d, "size": n} for d, n in layers]}).encode()
    m_d, m_n = write_blob(blobs, [manifest])
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": m_d, "size": m_n,
             "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
    return [d for d, _ in layers]


def run_measured(*args: str, timeout: float) -> tuple[subprocess.CompletedProcess, int]:
    """Runs outpost ARGS under /usr/bin/time -v; returns (result, peak RSS KiB)."""
    p = subprocess.run(["/usr/bin/time", "-v", outpost_bin(), *args], capture_output=True, text=True,
                       timeout=scaled(timeout))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p, int(m.group(1)) if m else -1


@unittest.skipUnless(os.path.exists("/usr/bin/time"), "needs /usr/bin/time (package time)")
class BigBundle(unittest.TestCase):
    def test_one_gib_export_and_import_in_flat_memory(self):
        tmp = tempfile.mkdtemp(prefix="bundle-big-")
        try:
            layout = os.path.join(tmp, "layout")
            layers = make_big_layout(layout)
            a, b = Outpost(), Outpost()
            for op in (a, b):  # write their configs; stores are used offline
                op.start()
                op.stop()
            p, rss = run_measured("import", "--config", a.config_path, "--repo", "big/img", layout, timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr[-2000:])
            bundle = os.path.join(tmp, "big.tar")
            p, rss_export = run_measured("export", "--config", a.config_path, "--repo", "big/img", "-o", bundle,
                                         timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr[-2000:])
            self.assertGreater(os.path.getsize(bundle), LAYERS * LAYER)
            shutil.rmtree(layout)
            shutil.rmtree(a.root)
            p, rss_import = run_measured("import", "--config", b.config_path, bundle, timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr[-2000:])
            print(f"# peak RSS: export {rss_export} KiB, import {rss_import} KiB (layout import {rss} KiB)")
            if not SANITIZED:  # shadow memory makes RSS meaningless under ASan
                self.assertLess(rss_export, MAX_RSS_KB)
                self.assertLess(rss_import, MAX_RSS_KB)
                self.assertLess(rss, MAX_RSS_KB)
            inv = subprocess.run([outpost_bin(), "inventory", "--config", b.config_path, "-o", "-"],
                                 capture_output=True, text=True, timeout=scaled(60))
            held = json.loads(inv.stdout)["blobs"]
            for d in layers:
                self.assertIn(d, held)
                path = os.path.join(b.root, "blobs", "sha256", d.split(":")[1][:2], d.split(":")[1])
                self.assertEqual(os.path.getsize(path), LAYER, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
