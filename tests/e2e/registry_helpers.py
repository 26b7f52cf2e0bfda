"""Shared helpers for the test_registry_*.py e2e modules: a tiny OCI
distribution client over harness.http, curl, image builders and snapshots of
what a registry exposes (to assert that bad input changed nothing)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

from harness import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Response, http, scaled,
                     sha256_digest)

OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def oci_error_codes(r: Response) -> list[str]:
    """The `code` of each entry of an OCI error body (empty when not one)."""
    try:
        return [e["code"] for e in json.loads(r.body)["errors"]]
    except (ValueError, KeyError, TypeError):
        return []


class Client:
    """Distribution-spec calls against one registry base URL."""

    def __init__(self, url: str):
        self.url = url

    def req(self, method: str, path: str, **kw) -> Response:
        return http(method, self.url + path, **kw)

    # -- blobs
    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha256_digest(data)
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data,
                     headers={"Content-Type": "application/octet-stream"}, timeout=60)
        if r.status != 201:
            raise AssertionError(f"monolithic push of {d} to {repo}: {r.status} {r.body[:300]!r}")
        return d

    def start_upload(self, repo: str) -> str:
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/")
        if r.status != 202:
            raise AssertionError(f"POST upload in {repo}: {r.status} {r.body[:300]!r}")
        return r.header("Location")

    def head_blob(self, repo: str, d: str) -> int:
        return self.req("HEAD", f"/v2/{repo}/blobs/{d}").status

    # -- manifests
    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> Response:
        return self.req("PUT", f"/v2/{repo}/manifests/{ref}", body=body,
                        headers={"Content-Type": media_type})

    def get_manifest(self, repo: str, ref: str) -> Response:
        return self.req("GET", f"/v2/{repo}/manifests/{ref}",
                        headers={"Accept": ", ".join([OCI_MANIFEST, OCI_INDEX])})

    def tags(self, repo: str) -> list[str] | None:
        r = self.req("GET", f"/v2/{repo}/tags/list")
        if r.status == 404:
            return None
        if r.status != 200:
            raise AssertionError(f"tags/list {repo}: {r.status} {r.body[:300]!r}")
        return r.json()["tags"]

    def catalog(self) -> list[str]:
        r = self.req("GET", "/v2/_catalog")
        if r.status != 200:
            raise AssertionError(f"_catalog: {r.status} {r.body[:300]!r}")
        return r.json()["repositories"]

    def push_image(self, repo: str, tag: str | None, layers: list[bytes], *,
                   config: bytes | None = None, config_type: str = OCI_CONFIG,
                   extra: Mapping[str, Any] | None = None) -> tuple[str, bytes]:
        """Pushes config + layers + an OCI manifest; returns (digest, bytes)."""
        if config is None:
            config = dumps({"architecture": "amd64", "os": "linux",
                            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(l) for l in layers]}})
        cd = self.push_blob(repo, config)
        descs = [{"mediaType": OCI_LAYER_TAR, "digest": self.push_blob(repo, l), "size": len(l)}
                 for l in layers]
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": config_type, "digest": cd, "size": len(config)},
               "layers": descs}
        man.update(extra or {})
        body = dumps(man)
        d = sha256_digest(body)
        r = self.put_manifest(repo, tag or d, body)
        if r.status != 201:
            raise AssertionError(f"PUT manifest {repo}:{tag}: {r.status} {r.body[:300]!r}")
        return d, body


# --------------------------------------------------------------------------
# curl

@dataclass
class CurlResult:
    status: int
    headers: dict[str, str]   # lower-case names, last value wins
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


def curl(*args: str, timeout: float = 120.0) -> CurlResult:
    """Runs curl (silent, no proxy) and parses the final response's status and
    headers (`-D -` on stdout, the body goes to a temp file via -o)."""
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="curl-body-") as bodyf:
        cmd = ["curl", "-sS", "--noproxy", "*", "-D", "-", "-o", bodyf.name, *args]
        p = subprocess.run(cmd, capture_output=True, timeout=scaled(timeout))
        if p.returncode != 0:
            raise AssertionError(f"curl failed ({p.returncode}): {cmd}\n{p.stderr.decode(errors='replace')}")
        with open(bodyf.name, "rb") as f:
            body = f.read()
    # -D - prints every response head (a 100 Continue too): keep the last one.
    heads = [h for h in p.stdout.decode("latin-1").split("\r\n\r\n") if h.startswith("HTTP/")]
    lines = heads[-1].split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return CurlResult(status, hdrs, body)


# --------------------------------------------------------------------------
# what the registry exposes, on disk and over HTTP

def blob_files(root: str) -> dict[str, int]:
    """{"sha256:<hex>": size} for every file under <root>/blobs."""
    out = {}
    base = os.path.join(root, "blobs")
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            out["sha256:" + f] = os.path.getsize(os.path.join(dirpath, f))
    return out


def bad_blob_files(root: str) -> list[str]:
    """Paths under <root>/blobs that are not sha256/<2 hex>/<64 hex> files
    whose content hashes to their name."""
    bad = []
    base = os.path.join(root, "blobs")
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, base).split(os.sep)
            if len(rel) != 3 or rel[0] != "sha256" or rel[1] != f[:2] or len(f) != 64:
                bad.append(p)
                continue
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != f:
                bad.append(p)
    return bad


def snapshot(c: Client, root: str, repos: list[str], digests: list[tuple[str, str]]) -> dict:
    """Catalog, tags of `repos`, HEAD status of each (repo, digest) blob and the
    blob files on disk: equal snapshots mean nothing visible changed."""
    return {
        "catalog": c.catalog(),
        "tags": {r: c.tags(r) for r in repos},
        "heads": {f"{r}@{d}": c.head_blob(r, d) for r, d in digests},
        "files": blob_files(root),
    }
