"""Crash safety (issue 3, item 5; DESIGN.md invariants 1 and 2): `kill -9`
during a 100 MiB streamed PATCH and during manifest PUTs, then a restart on
the same storage root. Nothing partial is ever visible (blob HEAD 404, no
dangling tag, blobs/ holds only files whose sha256 is their name), every
acknowledged write is still there, and the upload can be resumed to success."""

import hashlib
import json
import os
import socket
import threading
import unittest

from harness import OCI_MANIFEST, Outpost, http, sha256_digest, wait_until
from registry_helpers import Client, bad_blob_files, blob_files, dumps

MiB = 1024 * 1024


def respawn_after_kill(op: Outpost) -> None:
    """SIGKILL, then start again on the same port and storage root."""
    op.kill()
    want = op.expect_exit
    op.expect_exit = None  # the SIGKILL'ed run has no exit status to check
    try:
        op.restart()
    finally:
        op.expect_exit = want


def server_rx_queue(server_port: int, client_port: int) -> int | None:
    """Bytes the kernel holds for the server on the connection from
    client_port (rx_queue in /proc/net/tcp), None when not found."""
    want_local, want_remote = f"{server_port:04X}", f"{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, remote = parts[1].split(":")[1], parts[2].split(":")[1]
            if local == want_local and remote == want_remote:
                return int(parts[4].split(":")[1], 16)
    return None


class CrashSafety(unittest.TestCase):
    def test_kill_9_mid_blob_upload_then_resume(self):
        data = os.urandom(100 * MiB)
        d = sha256_digest(data)
        first = 10 * MiB
        with Outpost() as op:
            c = Client(op.url)
            base_d, _ = c.push_image("crash/app", "v1", [b"base layer"])
            before = {"catalog": c.catalog(), "tags": c.tags("crash/app")}

            loc = c.start_upload("crash/big")
            uuid = loc.rsplit("/", 1)[1]
            r = http("PATCH", op.url + loc, body=data[:first],
                     headers={"Content-Range": f"0-{first - 1}", "Content-Type": "application/octet-stream"},
                     timeout=60)
            self.assertEqual((r.status, r.header("Range")), (202, f"0-{first - 1}"))

            # Stream the other 90 MiB and SIGKILL once the server's upload
            # file has grown well past the acknowledged 10 MiB.
            data_file = os.path.join(op.root, "uploads", uuid, "data")
            rest = len(data) - first
            sock = socket.create_connection(("127.0.0.1", op.port), timeout=30)
            try:
                sock.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                              f"Content-Range: {first}-{len(data) - 1}\r\nContent-Length: {rest}\r\n\r\n").encode())
                sent = first
                killed = False
                while sent < len(data):
                    sock.sendall(data[sent:sent + MiB])
                    sent += MiB
                    if os.path.getsize(data_file) >= first + 20 * MiB:
                        op.kill()
                        killed = True
                        break
                self.assertTrue(killed, "the upload file never grew while the body streamed")
                self.assertLess(sent, len(data))
            finally:
                sock.close()

            respawn_after_kill(op)
            self.assertEqual(c.head_blob("crash/big", d), 404)
            self.assertNotIn(d, blob_files(op.root))
            self.assertEqual(bad_blob_files(op.root), [])
            self.assertEqual({"catalog": c.catalog(), "tags": c.tags("crash/app")}, before)
            self.assertIn(c.tags("crash/big"), (None, []))  # no tag, whether or not the name is known
            m = c.get_manifest("crash/app", "v1")
            self.assertEqual((m.status, m.header("Docker-Content-Digest")), (200, base_d))

            # The acknowledged 10 MiB survived; the unacknowledged rest is cut.
            s = http("GET", op.url + loc)
            self.assertEqual((s.status, s.header("Range")), (204, f"0-{first - 1}"), s.body)
            r = http("PATCH", op.url + loc, body=data[first:],
                     headers={"Content-Range": f"{first}-{len(data) - 1}"}, timeout=120)
            self.assertEqual((r.status, r.header("Range")), (202, f"0-{len(data) - 1}"), r.body)
            r = http("PUT", f"{op.url}{loc}?digest={d}", timeout=120)
            self.assertEqual(r.status, 201, r.body)
            g = http("GET", f"{op.url}/v2/crash/big/blobs/{d}", timeout=120)
            self.assertEqual(g.status, 200)
            self.assertEqual(hashlib.sha256(g.body).hexdigest(), d.split(":")[1])
            self.assertEqual(bad_blob_files(op.root), [])

    def test_kill_9_during_manifest_puts(self):
        with Outpost() as op:
            c = Client(op.url)
            repo = "crash/man"
            _, body = c.push_image(repo, "base", [b"layer for manifests"])
            template = json.loads(body)

            def manifest(tag: str) -> bytes:
                m = dict(template)
                m["annotations"] = {"org.example.tag": tag}
                return dumps(m)

            # (a) a PUT whose body is half sent when the server dies
            partial = manifest("partial")
            sock = socket.create_connection(("127.0.0.1", op.port), timeout=30)
            try:
                sock.sendall((f"PUT /v2/{repo}/manifests/partial HTTP/1.1\r\nHost: x\r\n"
                              f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {len(partial)}\r\n\r\n").encode()
                             + partial[:len(partial) // 2])
                cport = sock.getsockname()[1]
                wait_until(lambda: server_rx_queue(op.port, cport) == 0, 10,
                           message="outpost to read the partial manifest body")

                # (b) and full PUTs racing the kill
                acked: list[str] = []
                stop = threading.Event()

                def pusher():
                    i = 0
                    while not stop.is_set():
                        tag = f"t{i:04d}"
                        try:
                            r = c.put_manifest(repo, tag, manifest(tag))
                        except OSError:
                            return
                        if r.status == 201:
                            acked.append(tag)
                        i += 1

                th = threading.Thread(target=pusher, daemon=True)
                th.start()
                try:
                    wait_until(lambda: len(acked) >= 20, 30, message="20 acknowledged manifest PUTs")
                    op.kill()
                finally:
                    stop.set()
                    th.join(timeout=30)
                self.assertFalse(th.is_alive())
            finally:
                sock.close()

            respawn_after_kill(op)
            tags = c.tags(repo)
            self.assertNotIn("partial", tags)
            for t in acked:  # every acknowledged PUT survived, byte for byte
                self.assertIn(t, tags)
            for t in tags:  # and no tag dangles
                m = c.get_manifest(repo, t)
                self.assertEqual(m.status, 200, t)
                if t != "base":
                    self.assertEqual(m.body, manifest(t))
                self.assertEqual(m.header("Docker-Content-Digest"), sha256_digest(m.body))
                man = json.loads(m.body)
                for desc in [man["config"], *man["layers"]]:
                    self.assertEqual(c.head_blob(repo, desc["digest"]), 200)
            self.assertEqual(bad_blob_files(op.root), [])
            r = c.put_manifest(repo, "partial", partial)
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(c.get_manifest(repo, "partial").body, partial)


if __name__ == "__main__":
    unittest.main()
