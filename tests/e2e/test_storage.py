"""Cache management and integrity (issue #18, "What must be shown"):

- a small quota filled by pulls evicts least recently used first: an image
  read again survives, the oldest untouched one goes; pushed content still
  owed to the parent (its sync window closed) survives whatever is pulled;
- a blob streamed to a slow reader (4 KiB per 50 ms) while it is evicted
  reaches that reader byte-identical;
- a byte flipped in a stored blob: `outpost check` names it, a GET never
  returns the corrupt bytes, `outpost check --repair` (through the running
  server) moves it aside and a pull afterwards is byte-identical;
- a real 64 MiB tmpfs as the store: pushes until it is full get 507 with a
  detail saying the disk is full, an earlier push stays intact and
  pullable, and after a delete + `outpost gc` pushes work again;
- kill -9 rounds in the middle of pushes: after a restart and a GC the
  store holds at most 1.1 x its live bytes.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (DockerRegistry, Outpost, http, run_outpost, sha256_digest, wait_until)
from registry_helpers import Client, curl, oci_error_codes
from sync_helpers import CLOSED


def rnd(size: int, seed: str) -> bytes:
    return hashlib.shake_256(f"storage-e2e-{seed}".encode()).digest(size)


def status(op: Outpost) -> dict:
    r = http("GET", op.url + "/outpost/status")
    assert r.status == 200, r.status
    return r.json()


def pull(url: str, repo: str, tag: str) -> dict[str, bytes]:
    """GET the manifest and every blob; digest -> bytes (asserting digests)."""
    c = Client(url)
    r = c.get_manifest(repo, tag)
    if r.status != 200:
        raise AssertionError(f"GET manifest {repo}:{tag}: {r.status} {r.body[:200]!r}")
    out = {sha256_digest(r.body): r.body}
    man = json.loads(r.body)
    for desc in [man["config"], *man["layers"]]:
        b = c.req("GET", f"/v2/{repo}/blobs/{desc['digest']}", timeout=60)
        if b.status != 200:
            raise AssertionError(f"GET blob {desc['digest']} of {repo}: {b.status} {b.body[:200]!r}")
        if sha256_digest(b.body) != desc["digest"]:
            raise AssertionError(f"corrupt bytes served under {desc['digest']}")
        out[desc["digest"]] = b.body
    return out


def push_image(url: str, repo: str, tag: str, layer: bytes) -> tuple[str, bytes]:
    """Config + one layer + an OCI manifest, with POST + PUT uploads (what
    docker-registry 2.8 accepts; it ignores a monolithic POST's digest)."""
    def blob(data: bytes) -> str:
        d = sha256_digest(data)
        r = http("POST", f"{url}/v2/{repo}/blobs/uploads/")
        assert r.status == 202, (r.status, r.body[:200])
        loc = r.header("Location")
        loc = loc if loc.startswith("http") else url + loc
        sep = "&" if "?" in loc else "?"
        r = http("PUT", f"{loc}{sep}digest={d}", body=data,
                 headers={"Content-Type": "application/octet-stream"}, timeout=60)
        assert r.status == 201, (r.status, r.body[:200])
        return d
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}).encode()
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": blob(config), "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": blob(layer), "size": len(layer)}]}
    body = json.dumps(man).encode()
    r = Client(url).put_manifest(repo, tag, body)
    assert r.status == 201, (r.status, r.body[:200])
    return sha256_digest(body), body


def blob_path(root: str, digest: str) -> str:
    hexd = digest.split(":", 1)[1]
    return os.path.join(root, "blobs", "sha256", hexd[:2], hexd)


def tree_bytes(path: str) -> int:
    total = 0
    for d, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


class Eviction(unittest.TestCase):
    LAYER = 200 * 1024

    def setUp(self):
        self.reg = DockerRegistry().__enter__()
        self.addCleanup(self.reg.__exit__, None, None, None)
        self.images = {}
        for i in range(1, 5):
            d, _ = push_image(self.reg.url, f"lib/img{i}", "v1", rnd(self.LAYER, f"img{i}"))
            self.images[i] = d

    def outpost(self, max_size: str) -> Outpost:
        op = Outpost({"parent": {"url": self.reg.url, "connect_timeout": "1s", "timeout": "5s"},
                      "storage": {"max_size": max_size, "evict_grace": "0s", "gc_interval": "0s"},
                      "sync": CLOSED})
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        return op

    def wait_evicted(self, op: Outpost, at_least: int) -> dict:
        wait_until(lambda: status(op)["storage"]["evicted"]["blobs"] >= at_least, timeout=20,
                   message="no eviction")
        return status(op)["storage"]

    def test_lru_order_and_owed_pushes_survive(self):
        op = self.outpost("1000KiB")
        # Pushed here, owed to the parent: the window is closed, replay waits.
        pushed = Client(op.url)
        pushed_digest, _ = pushed.push_image("site/app", "v1", [rnd(300 * 1024, "pushed")])
        want_pushed = pull(op.url, "site/app", "v1")
        held = {}
        for i in (1, 2, 3):
            held[i] = pull(op.url, f"lib/img{i}", "v1")
            time.sleep(0.01)  # distinct access times (ms)
        # img1 is read again: now img2 is the least recently used.
        self.assertEqual(pull(op.url, "lib/img1", "v1"), held[1])
        held[4] = pull(op.url, "lib/img4", "v1")
        st = self.wait_evicted(op, 1)
        self.assertGreater(st["evicted"]["bytes"], 0, st)
        self.assertLessEqual(st["bytes"]["total"], 1000 * 1024, st)
        self.assertGreaterEqual(st["bytes"]["pushed"], 300 * 1024, st)
        m = http("GET", op.url + "/metrics").body.decode()
        self.assertIn('outpost_storage_bytes{origin="pushed"}', m)
        self.assertIn("outpost_evictions_total", m)
        # With the parent gone, what is held is what eviction left.
        self.reg.stop()
        for i in (1, 3, 4):
            self.assertEqual(pull(op.url, f"lib/img{i}", "v1"), held[i], f"img{i} was evicted")
        self.assertEqual(pull(op.url, "site/app", "v1"), want_pushed)
        layer2 = [d for d in held[2] if d in json.loads(held[2][self.images[2]])["layers"][0]["digest"]]
        self.assertFalse(os.path.exists(blob_path(op.root, layer2[0])), "img2's layer is still on disk")
        r = Client(op.url).get_manifest("lib/img2", "v1")
        self.assertNotEqual(r.status, 200, "img2 (least recently used) survived")

    def test_blob_streamed_while_evicted_arrives_whole(self):
        op = self.outpost("700KiB")
        big = 600 * 1024
        big_digest, big_man = push_image(self.reg.url, "lib/big", "v1", rnd(big, "big"))
        layer = json.loads(big_man)["layers"][0]["digest"]
        pull(op.url, "lib/big", "v1")
        # A slow reader (curl 7.88's --limit-rate does not hold back a
        # loopback transfer): a small receive buffer and 4 KiB per 50 ms,
        # about 7 s for the blob, so the eviction happens meanwhile.
        got = bytearray()
        started = threading.Event()
        finished = threading.Event()

        def slow_read() -> None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((op.host, op.port))
            sock.sendall(f"GET /v2/lib/big/blobs/{layer} HTTP/1.1\r\nHost: x\r\n"
                         "Connection: close\r\n\r\n".encode())
            sock.settimeout(30)
            buf = bytearray()
            try:
                while True:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                    started.set()
                    time.sleep(0.05)
            finally:
                sock.close()
                got.extend(buf)
                finished.set()

        reader = threading.Thread(target=slow_read, daemon=True)
        reader.start()
        self.assertTrue(started.wait(10), "the slow read did not start")
        for i in (1, 2):
            pull(op.url, f"lib/img{i}", "v1")
        self.wait_evicted(op, 1)
        wait_until(lambda: not os.path.exists(blob_path(op.root, layer)), timeout=10,
                   message="the streamed blob was not evicted")
        self.assertFalse(finished.is_set(), "the slow read finished before the eviction: not a test")
        self.assertTrue(finished.wait(60), "the slow read did not finish")
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertEqual(len(body), big)
        self.assertEqual(sha256_digest(body), layer)


class Integrity(unittest.TestCase):
    def test_flipped_byte_is_named_never_served_and_repaired(self):
        reg = DockerRegistry().__enter__()
        self.addCleanup(reg.__exit__, None, None, None)
        _d, man = push_image(reg.url, "lib/app", "v1", rnd(150 * 1024, "check"))
        layer = json.loads(man)["layers"][0]["digest"]
        op = Outpost({"parent": {"url": reg.url, "connect_timeout": "1s", "timeout": "5s"},
                      "storage": {"gc_interval": "0s"}})
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        want = pull(op.url, "lib/app", "v1")
        op.stop()
        path = blob_path(op.root, layer)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.seek(1000)
            b = f.read(1)
            f.seek(1000)
            f.write(bytes([b[0] ^ 0xFF]))
        # Offline: the check names it and exits 1.
        r = run_outpost("check", "--config", op.config_path, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(layer, r.stdout)
        self.assertIn("corrupt", r.stdout)
        self.assertIn("offline", r.stdout)
        op.start()
        # Never the corrupt bytes: pull-through refetches verified ones.
        g = http("GET", f"{op.url}/v2/lib/app/blobs/{layer}", timeout=30)
        if g.status == 200:
            self.assertEqual(sha256_digest(g.body), layer)
        # Flip it again and repair through the running server.
        op.stop()
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.seek(7)
            f.write(b"\x00\x01")
        op.start()
        r = run_outpost("check", "--repair", "--config", op.config_path, timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(layer, r.stdout)
        self.assertIn("running server", r.stdout)
        self.assertIn("quarantined", r.stdout)
        self.assertTrue(os.path.exists(os.path.join(op.root, "quarantine", "sha256-" + layer.split(":")[1])))
        self.assertEqual(pull(op.url, "lib/app", "v1"), want)

        def healed() -> bool:
            with open(path, "rb") as f:
                return sha256_digest(f.read()) == layer
        wait_until(healed, timeout=10, message="the refetched blob was not stored")
        r = run_outpost("check", "--json", "--config", op.config_path, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["corrupt"], 0)


class DiskFull(unittest.TestCase):
    def test_full_tmpfs_answers_507_keeps_reads_and_recovers(self):
        mnt = tempfile.mkdtemp(prefix="outpost-tmpfs-")
        self.addCleanup(os.rmdir, mnt)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt],
                           capture_output=True, text=True)
        if m.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs: {m.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt], check=False)
        reg = DockerRegistry().__enter__()
        self.addCleanup(reg.__exit__, None, None, None)
        push_image(reg.url, "lib/cached", "v1", rnd(16 << 20, "cached"))
        op = Outpost({"parent": {"url": reg.url, "connect_timeout": "1s", "timeout": "10s"},
                      "storage": {"gc_interval": "0s", "evict_grace": "0s"}, "sync": CLOSED},
                     root=os.path.join(mnt, "store"))
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        c = Client(op.url)
        pull(op.url, "lib/cached", "v1")  # 16 MiB of evictable, cached content
        first_digest, _ = c.push_image("site/first", "v1", [rnd(4 << 20, "first")])
        want = pull(op.url, "site/first", "v1")
        failed = None
        pushed = []
        for i in range(30):
            data = rnd(8 << 20, f"fill{i}")
            d = sha256_digest(data)
            r = c.req("POST", f"/v2/site/fill/blobs/uploads/?digest={d}", body=data,
                      headers={"Content-Type": "application/octet-stream"}, timeout=60)
            if r.status == 201:
                pushed.append(d)
                continue
            failed = r
            break
        self.assertIsNotNone(failed, "64 MiB never filled up")
        self.assertEqual(failed.status, 507, failed.body[:300])
        self.assertEqual(oci_error_codes(failed), ["DENIED"])
        self.assertIn("disk is full", failed.body.decode())
        # Nothing half-written is visible; reads keep working.
        self.assertEqual(c.head_blob("site/fill", d), 404)
        self.assertEqual(pull(op.url, "site/first", "v1"), want)
        # Evict first, then error: the refused write made the server evict
        # cached content, so the same push succeeds without an operator.
        wait_until(lambda: status(op)["storage"]["evicted"]["blobs"] > 0, timeout=20,
                   message="no eviction after the disk-full error")
        self.assertEqual(c.push_blob("site/fill", data), d)
        pushed.append(d)
        # Free space: delete the filler blobs, collect them now.
        for pd in pushed:
            self.assertEqual(c.req("DELETE", f"/v2/site/fill/blobs/{pd}").status, 202)
        r = run_outpost("gc", "--grace", "0s", "--config", op.config_path, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("running server", r.stdout)
        again = rnd(8 << 20, "again")
        self.assertEqual(c.push_blob("site/fill", again), sha256_digest(again))
        self.assertEqual(pull(op.url, "site/first", "v1"), want)


class KillRounds(unittest.TestCase):
    def test_kill9_rounds_leave_at_most_1_1x_live_bytes(self):
        op = Outpost({"storage": {"gc_interval": "0s", "upload_ttl": "1s"}})
        op.__enter__()
        self.addCleanup(op.__exit__, None, None, None)
        for rnd_no in range(10):
            c = Client(op.url)
            stop = threading.Event()

            def mono(k: int) -> None:
                data = rnd(3 << 20, f"mono{rnd_no}-{k}")
                try:
                    c.push_image(f"kill/m{k}", f"r{rnd_no}", [data])
                except Exception:
                    pass

            def chunked(k: int) -> None:
                try:
                    loc = c.start_upload(f"kill/c{k}")
                    url = loc if loc.startswith("http") else op.url + loc
                    off = 0
                    for j in range(8):
                        if stop.is_set():
                            return
                        chunk = rnd(512 * 1024, f"chunk{rnd_no}-{k}-{j}")
                        r = http("PATCH", url, body=chunk, headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{off}-{off + len(chunk) - 1}"}, timeout=30)
                        if r.status != 202:
                            return
                        url = r.header("Location")
                        url = url if url.startswith("http") else op.url + url
                        off += len(chunk)
                except Exception:
                    pass

            threads = [threading.Thread(target=mono, args=(k,)) for k in range(2)]
            threads += [threading.Thread(target=chunked, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.05 + 0.03 * rnd_no)  # mid-upload, at a different point each round
            op.kill()
            stop.set()
            for t in threads:
                t.join(timeout=60)
            op.start()
        # The kills left dead sessions a client could still resume: the GC
        # below has something to do (else this test shows nothing).
        dead = tree_bytes(os.path.join(op.root, "uploads"))
        self.assertGreater(dead, 0, "no upload session survived the kills")
        time.sleep(1.2)  # past upload_ttl (1s): the sessions the kills left are idle
        r = http("POST", op.url + "/outpost/gc?grace=0s", timeout=120)
        self.assertGreater(r.json()["uploads_expired"], 0, r.body[:300])
        self.assertEqual(r.status, 200, r.body[:300])
        # A restart measures the live bytes (the rows) at once.
        op.stop()
        op.start()
        st = wait_until(lambda: status(op)["storage"]["bytes"] is not None and status(op), timeout=10)
        live = st["storage"]["bytes"]["total"]
        on_disk = sum(tree_bytes(os.path.join(op.root, d)) for d in ("blobs", "uploads", "tmp"))
        self.assertLessEqual(on_disk, 1.1 * live + 64 * 1024,
                             f"on disk {on_disk}, live {live}, gc {r.body[:300]!r}, {st['storage']}")


if __name__ == "__main__":
    unittest.main()
