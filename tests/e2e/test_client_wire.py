"""The request heads Docker 20.10 and containerd 1.6 send to a mirror,
replayed byte for byte against Outpost (issue #17). They were captured from
the real clients with capture_client_heads.py (a recording server in place of
Outpost, the recipes in conf/clients/); test_client_docker/containerd run the
clients themselves.
This file needs no root, so the wire contract is checked everywhere:

- Docker: GET /v2/ with `Connection: close`; HEAD of a manifest by tag with
  six separate Accept lines; GET by digest; `library/` names. The HEAD answer
  must carry Docker-Content-Digest (without it Docker GETs by tag), and a
  tag not held must be a 404 on HEAD (Docker then falls back to Docker Hub);
- containerd: no /v2/ ping, ?ns=docker.io, one comma-joined Accept, and with
  override_path = true the host in the path (/v2/docker.io/library/...);
- the same answers with the parent stopped (from the cache, marked offline).
"""

import os
import tempfile
import unittest

from harness import (OCI_INDEX, DockerRegistry, Outpost, RawConn, make_oci_layout, push_layout,
                     sha256_digest)
from client_helpers import parent_and_mirror_config

DOCKER_UA = ("docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1 os/linux arch/amd64 "
             "UpstreamClient(Docker-Client/28.2.2 \\(linux\\))")
DOCKER_HEAD_ACCEPT = ["application/vnd.docker.distribution.manifest.v2+json",
                      "application/vnd.docker.distribution.manifest.list.v2+json",
                      "application/vnd.oci.image.index.v1+json",
                      "application/vnd.docker.distribution.manifest.v1+prettyjws",
                      "application/json",
                      "application/vnd.oci.image.manifest.v1+json"]
CONTAINERD_ACCEPT = ("application/vnd.docker.distribution.manifest.v2+json, "
                     "application/vnd.docker.distribution.manifest.list.v2+json, "
                     "application/vnd.oci.image.manifest.v1+json, "
                     "application/vnd.oci.image.index.v1+json, */*")


def docker_head(method: str, path: str, host: str, accept: list[str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {DOCKER_UA}"]
    lines += [f"Accept: {a}" for a in accept]
    if method == "GET":
        lines.append("Accept-Encoding: gzip")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def containerd_head(method: str, path: str, host: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: containerd/1.6.20~ds1\r\n"
            f"Accept: {CONTAINERD_ACCEPT}\r\nAccept-Encoding: gzip\r\n\r\n").encode()


class ClientWire(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="client-wire-")
        cls.addClassCleanup(cls._tmp.cleanup)
        cls.lay = make_oci_layout(os.path.join(cls._tmp.name, "src"),
                                  layers=[{"a.txt": b"a\n"}, {"b.txt": b"b\n"}], tag="v1",
                                  platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        cls.parent = DockerRegistry().__enter__()
        cls.addClassCleanup(cls.parent.__exit__, None, None, None)
        push_layout(cls.lay, cls.parent.hostport, "library/wire")
        cls.op = Outpost(parent_and_mirror_config(cls.parent.url)).__enter__()
        cls.addClassCleanup(cls.op.__exit__, None, None, None)
        cls.host = f"127.0.0.1:{cls.op.port}"

    def exchange(self, raw: bytes, head: bool, close: bool):
        with RawConn(self.op.port) as c:
            c.send(raw)
            r = c.read_response(head=head)
            if close:
                self.assertTrue(c.closed_by_peer(5), "Connection: close was not honoured")
            return r

    def check_client(self, offline: bool) -> None:
        top, amd64 = self.lay.top_digest, self.lay.images[0]
        layer = amd64.layer_digests[0]
        cases = {
            "docker": (lambda m, p, a=DOCKER_HEAD_ACCEPT: docker_head(m, p, self.host, a), "/v2/library/wire", "", True),
            "containerd ns": (lambda m, p, a=None: containerd_head(m, p, self.host), "/v2/library/wire", "?ns=docker.io", False),
            "containerd override_path": (lambda m, p, a=None: containerd_head(m, p, self.host),
                                         "/v2/docker.io/library/wire", "?ns=docker.io", False),
        }
        for name, (make, base, q, close) in cases.items():
            with self.subTest(client=name, offline=offline):
                if name == "docker":
                    r = self.exchange(make("GET", "/v2/"), head=False, close=True)
                    self.assertEqual(r.status, 200)
                r = self.exchange(make("HEAD", f"{base}/manifests/v1{q}"), head=True, close=close)
                self.assertEqual((r.status, r.header("Docker-Content-Digest"), r.header("Content-Type")),
                                 (200, top, OCI_INDEX))
                self.assertEqual(r.header("Content-Length"), str(len(self.lay.top_bytes)))
                if offline:
                    self.assertEqual(r.header("Outpost-Cache"), "offline")
                # by tag (what both do when a HEAD lacks the digest), then by digest
                r = self.exchange(make("GET", f"{base}/manifests/v1{q}"), head=False, close=close)
                self.assertEqual((r.status, r.body), (200, self.lay.top_bytes))
                r = self.exchange(make("GET", f"{base}/manifests/{amd64.manifest_digest}{q}"), head=False, close=close)
                self.assertEqual((r.status, r.body), (200, amd64.manifest))
                r = self.exchange(make("GET", f"{base}/blobs/{layer}{q}", []), head=False, close=close)
                self.assertEqual((r.status, sha256_digest(r.body)), (200, layer))
                # a tag not held: HEAD 404 (Docker and containerd then try the next host)
                r = self.exchange(make("HEAD", f"{base}/manifests/nosuchtag{q}"), head=True, close=close)
                self.assertEqual(r.status, 404)

    def test_1_online(self):
        self.check_client(offline=False)

    def test_2_parent_stopped(self):
        self.check_client(offline=False)  # warm: every path filled while online
        self.parent.stop()
        self.check_client(offline=True)
